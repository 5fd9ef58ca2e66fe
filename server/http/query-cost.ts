import { createComplexityRule } from '@pothos/plugin-complexity';
import {
  GraphQLError,
  Kind,
  TypeInfo,
  visit,
  visitWithTypeInfo,
  validate,
  type DocumentNode,
  type GraphQLSchema,
  type ValueNode,
} from 'graphql';

export const COST_LIMIT_EXCEEDED = 'COST_LIMIT_EXCEEDED';

/** The names of the variables in an argument's value (nested in lists and input objects too). */
function variablesIn(value: ValueNode, names: Set<string>): void {
  if (value.kind === Kind.VARIABLE) names.add(value.name.value);
  else if (value.kind === Kind.LIST) for (const v of value.values) variablesIn(v, names);
  else if (value.kind === Kind.OBJECT) for (const f of value.fields) variablesIn(f.value, names);
}

/**
 * The variables that the arguments of fields whose cost depends on their arguments (pages) take in the document; the
 * document costs the same in every request that gives them the same values (none: in every request).
 */
function costVariables(schema: GraphQLSchema, document: DocumentNode): string[] {
  const typeInfo = new TypeInfo(schema);
  const names = new Set<string>();
  visit(
    document,
    visitWithTypeInfo(typeInfo, {
      Field(node) {
        if (typeof typeInfo.getFieldDef()?.extensions?.complexity !== 'function') return;
        for (const argument of node.arguments ?? []) variablesIn(argument.value, names);
      },
    }),
  );
  return [...names].sort();
}

/** Costs kept per document (by operation and the values of its cost variables); beyond, the document's are dropped. */
const MAX_COSTS_PER_DOCUMENT = 256;

/**
 * The cost limit, with the request's variables: `first: $n` counts as the n rows it asks for, which a validation rule
 * over the document alone (graphql-armor's cost limit) cannot see. Each field's cost is declared in the schema (Pothos'
 * complexity plugin; pages in schema/paging.ts) and measured by the plugin's rule. Called before execution on every
 * path (Yoga's onExecute and the lean path), it answers the refusal or null. A document whose pages take no variables
 * (a redemption's) costs the same every time: it is measured once; one whose pages take variables (`first: $first`) is
 * measured once per operation and values of those variables (a dashboard asks for the same page size every time).
 */
export function createCostCheck(schema: GraphQLSchema, maxCost: number) {
  const costs = new WeakMap<DocumentNode, Map<string, GraphQLError | null>>();
  const variablesOf = new WeakMap<DocumentNode, string[]>();

  function measure(document: DocumentNode, variables: Record<string, unknown>, operationName: string | null, context: object) {
    let refusal: GraphQLError | null = null;
    const rule = createComplexityRule({
      context,
      variableValues: variables,
      operationName,
      validate: ({ complexity }) => {
        if (complexity > maxCost) {
          refusal = new GraphQLError(
            `The query costs ${complexity}, more than the ${maxCost} one request may cost: ask for smaller pages (first) or nest fewer of them.`,
            { extensions: { code: COST_LIMIT_EXCEEDED, cost: complexity, maxCost, http: { status: 400 } } },
          );
        }
      },
    });
    // Other errors of the rule (variables that do not coerce) are execution's to report, in its own words.
    validate(schema, document, [rule]);
    return refusal as GraphQLError | null;
  }

  return function checkCost(
    document: DocumentNode,
    variables: Record<string, unknown> | null | undefined,
    operationName: string | null | undefined,
    context: object,
  ): GraphQLError | null {
    let names = variablesOf.get(document);
    if (names === undefined) variablesOf.set(document, (names = costVariables(schema, document)));
    let byKey = costs.get(document);
    if (!byKey) costs.set(document, (byKey = new Map()));
    // The operation, then the cost variables' values (JSON; a missing one differs from null).
    let key = operationName ?? '';
    for (const name of names) {
      const value = variables?.[name];
      key += `\u0000${value === undefined ? '' : JSON.stringify(value)}`;
    }
    let refusal = byKey.get(key);
    if (refusal === undefined) {
      refusal = measure(document, variables ?? {}, operationName ?? null, context);
      if (byKey.size >= MAX_COSTS_PER_DOCUMENT) byKey.clear();
      byKey.set(key, refusal);
    }
    return refusal;
  };
}
