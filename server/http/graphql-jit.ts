import {
  getNamedType,
  getOperationAST,
  GraphQLError,
  isScalarType,
  isSpecifiedScalarType,
  Kind,
  TypeInfo,
  visit,
  visitWithTypeInfo,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type FieldNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
} from 'graphql';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import type { Plugin } from 'graphql-yoga';

const isPromise = (value: unknown): value is Promise<unknown> =>
  typeof (value as { then?: unknown } | null)?.then === 'function';

/**
 * An envelop plugin that runs operations compiled by graphql-jit (once per parsed document and operation name; the
 * documents are Yoga's cached ones). It replaces only the execute function: every other plugin's `onExecute`, the
 * permission check and Yoga's error masking run as before, on Yoga's transport and on the lean one alike.
 *
 * graphql-jit differs from graphql-js in three places, and the answers must not:
 * - It words variable-coercion errors its own way and leaves `locations` off some field errors. A result without
 *   `data` (the variables were refused: nothing ran) and a query with errors (no side effects) are run again with the
 *   executor it replaced, for the exact answer; a mutation cannot run twice, so its errors get the locations
 *   graphql-js gives (the field nodes at the error's path).
 * - It resolves a custom scalar's literal at compile time, without the request's variables, so `data: { a: $v }`
 *   lost `a`. Documents with a variable inside such a literal are not compiled.
 */
export function useGraphqlJit(): Plugin & { compiled(args: CompileArgs): CompiledQuery | null } {
  // Per document (Yoga's parser cache hands out the same document for the same text), per operation name.
  const compiled = new WeakMap<DocumentNode, Map<string | undefined, CompiledQuery | null>>();

  const compiledFor = (args: CompileArgs): CompiledQuery | null => {
    let byName = compiled.get(args.document);
    if (!byName) compiled.set(args.document, (byName = new Map()));
    const name = args.operationName ?? undefined;
    let query = byName.get(name);
    if (query === undefined) {
      const attempt = hasVariableInScalarLiteral(args.schema, args.document)
        ? null
        : compileQuery(args.schema, args.document, name);
      query = attempt && isCompiledQuery(attempt) ? attempt : null;
      byName.set(name, query);
    }
    return query;
  };

  return {
    /** The compiled query for a document and operation name, or null when it runs on the executor it replaced. */
    compiled: compiledFor,
    onExecute({ args, executeFn, setExecuteFn }) {
      const query = compiledFor(args);
      if (!query) return;
      setExecuteFn((execution: ExecutionArgs) => {
        const exact = (result: ExecutionResult) => {
          if (!result.errors?.length) return result;
          const operation = getOperationAST(execution.document, execution.operationName);
          if (!('data' in result) || !operation || operation.operation === 'query') return executeFn(execution);
          return withFieldLocations(result, execution.document, operation);
        };
        // No promise of our own around the compiled query's (one less turn of the microtask queue per request).
        const result = query.query(execution.rootValue, execution.contextValue, execution.variableValues ?? {});
        return isPromise(result) ? result.then((r) => exact(r as ExecutionResult)) : exact(result as ExecutionResult);
      });
    },
  };
}

export interface CompileArgs {
  schema: GraphQLSchema;
  document: DocumentNode;
  operationName?: string | null;
}

/**
 * A compiled mutation's result with errors as graphql-js words them: graphql-jit leaves `locations` off some field
 * errors, graphql-js gives the field nodes at the error's path (a mutation cannot run again for the exact answer).
 */
export function withFieldLocations(result: ExecutionResult, document: DocumentNode, operation: OperationDefinitionNode): ExecutionResult {
  if (!result.errors?.length) return result;
  const errors = result.errors.map((e) =>
    e.locations || !e.path
      ? e
      : new GraphQLError(e.message, {
          nodes: fieldNodesAt(document, operation, e.path),
          path: e.path,
          originalError: e.originalError ?? e,
        }),
  );
  return { ...result, errors };
}

/** Whether a variable sits inside the literal of a custom scalar (graphql-jit would resolve it without variables). */
export function hasVariableInScalarLiteral(schema: GraphQLSchema, document: DocumentNode): boolean {
  const typeInfo = new TypeInfo(schema);
  let found = false;
  const containsVariable = (value: ValueNode): boolean =>
    value.kind === Kind.VARIABLE ||
    (value.kind === Kind.LIST && value.values.some(containsVariable)) ||
    (value.kind === Kind.OBJECT && value.fields.some((f) => containsVariable(f.value)));
  const check = (node: ValueNode) => {
    const type = typeInfo.getInputType();
    const named = type && getNamedType(type);
    if (named && isScalarType(named) && !isSpecifiedScalarType(named) && containsVariable(node)) found = true;
  };
  visit(document, visitWithTypeInfo(typeInfo, { ObjectValue: check, ListValue: check }));
  return found;
}

/** The field nodes a response path points at (what graphql-js reports as an error's locations). */
function fieldNodesAt(document: DocumentNode, operation: OperationDefinitionNode, path: readonly (string | number)[]) {
  const fragments = new Map(
    document.definitions.flatMap((d) => (d.kind === Kind.FRAGMENT_DEFINITION ? [[d.name.value, d] as const] : [])),
  );
  const collect = (set: SelectionSetNode, key: string, into: FieldNode[], seen: Set<string>) => {
    for (const s of set.selections) {
      if (s.kind === Kind.FIELD && (s.alias ?? s.name).value === key) into.push(s);
      else if (s.kind === Kind.INLINE_FRAGMENT) collect(s.selectionSet, key, into, seen);
      else if (s.kind === Kind.FRAGMENT_SPREAD && !seen.has(s.name.value) && fragments.has(s.name.value)) {
        seen.add(s.name.value);
        collect(fragments.get(s.name.value)!.selectionSet, key, into, seen);
      }
    }
  };
  let sets: SelectionSetNode[] = [operation.selectionSet];
  let nodes: FieldNode[] = [];
  for (const key of path) {
    if (typeof key === 'number') continue;
    nodes = [];
    for (const set of sets) collect(set, key, nodes, new Set());
    sets = nodes.flatMap((n) => (n.selectionSet ? [n.selectionSet] : []));
  }
  return nodes;
}
