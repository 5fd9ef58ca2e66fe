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

const hasVariable = (value: ValueNode): boolean =>
  value.kind === Kind.VARIABLE ||
  (value.kind === Kind.LIST && value.values.some(hasVariable)) ||
  (value.kind === Kind.OBJECT && value.fields.some((f) => hasVariable(f.value)));

/**
 * Whether a field whose cost depends on its arguments (a page) takes a variable in the document; else the document
 * costs the same in every request.
 */
function costDependsOnVariables(schema: GraphQLSchema, document: DocumentNode): boolean {
  const typeInfo = new TypeInfo(schema);
  let depends = false;
  visit(
    document,
    visitWithTypeInfo(typeInfo, {
      Field(node) {
        if (typeof typeInfo.getFieldDef()?.extensions?.complexity !== 'function') return;
        if (node.arguments?.some((a) => hasVariable(a.value))) depends = true;
      },
    }),
  );
  return depends;
}

/**
 * The cost limit, with the request's variables: `first: $n` counts as the n rows it asks for, which a validation rule
 * over the document alone (graphql-armor's cost limit) cannot see. Each field's cost is declared in the schema (Pothos'
 * complexity plugin; pages in schema/paging.ts) and measured by the plugin's rule. Called before execution on every
 * path (Yoga's onExecute and the lean path), it answers the refusal or null. A document whose pages take no variables
 * (a redemption's) costs the same every time: it is measured once.
 */
export function createCostCheck(schema: GraphQLSchema, maxCost: number) {
  const fixed = new WeakMap<DocumentNode, Map<string, GraphQLError | null>>();
  const dependent = new WeakMap<DocumentNode, boolean>();

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
    let depends = dependent.get(document);
    if (depends === undefined) dependent.set(document, (depends = costDependsOnVariables(schema, document)));
    if (depends) return measure(document, variables ?? {}, operationName ?? null, context);
    let byOperation = fixed.get(document);
    if (!byOperation) fixed.set(document, (byOperation = new Map()));
    const key = operationName ?? '';
    if (!byOperation.has(key)) byOperation.set(key, measure(document, {}, operationName ?? null, context));
    return byOperation.get(key)!;
  }
}
