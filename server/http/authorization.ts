import {
  GraphQLError,
  getNamedType,
  isObjectType,
  isInterfaceType,
  Kind,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLNamedType,
  type GraphQLSchema,
  type SelectionSetNode,
} from 'graphql';
import type { Permission } from '../database/entities/api-key.js';
import { hasPermission, type Caller } from '../domain/api-keys.js';

/**
 * Who may use what, in one place. Every field a request selects (Type.field, fragments included) must be allowed:
 * first by its own rule, else by its type's rule; anything without a rule is for admin keys only. So a field added
 * later is closed until someone opens it here.
 *
 * The rules hold on every path through a result: a stored token read through a mutation's result (revokeRequestToken)
 * takes what reading it through a query takes. Only the results listed in HANDED_OVER relax the type's rule, because
 * the caller already holds what they show.
 *
 * `any`: every authenticated key. Admin keys may use everything.
 */
export type Rule = Permission | 'any';

export const FIELD_RULES: Record<string, Rule> = {
  'Query.requestToken': 'read',
  'Query.requestTokens': 'read',
  'Query.requestTokenLogs': 'read',
  'RequestToken.logs': 'read',
  // A stored token's JWT is a working link (a login, for REQUEST and SESSION tokens): only a key that could issue
  // one may see it, never a dashboard's READ key or a REDEEM key.
  'RequestToken.jwt': 'issue',
  // What a revocation tells about the token it revoked (which one, and that it is revoked now), and what a recorded
  // status tells of its redemption's token (the scope is in the JWT the redeeming key held).
  'RequestToken.id': 'any',
  'RequestToken.scope': 'any',
  'RequestToken.status': 'any',
  'RequestToken.revokedAt': 'any',
  'Mutation.createRequestToken': 'issue',
  'Mutation.revokeRequestToken': 'issue',
  'Mutation.forgetUser': 'issue',
  'Mutation.redeemRequestToken': 'redeem',
  'Mutation.recordResponseStatus': 'redeem',
  // A confirmation page inspects before it redeems: the same key.
  'Query.inspectRequestToken': 'redeem',
  // Dashboards: reading is 'read', scoped to the caller's client; bulk revocation like revocation; retention spans
  // every client, so it stays admin-only (no rule).
  'Query.usageStats': 'read',
  'Query.findRequestTokenByJwt': 'read',
  'Mutation.revokeRequestTokens': 'issue',
  // The dashboard asks first which buttons to show.
  'Query.viewer': 'any',
};

/**
 * Results that hand the caller a token it already holds: the token it has just issued (it wrote every field), the
 * token whose JWT it presented to redeem or inspect. There the token's type rule does not apply (its field rules,
 * `jwt` and `logs`, still do).
 */
export const HANDED_OVER = new Set(['CreateRequestTokenSuccess.token', 'Redemption.token', 'Inspection.token']);

/** Types whose fields are open to any key that may reach them through an allowed field. */
export const TYPE_RULES: Record<string, Rule> = {
  // Reading a stored token takes 'read', whichever field returns it (see HANDED_OVER for the exceptions).
  RequestToken: 'read',
  RequestTokenConnection: 'any',
  RequestTokenEdge: 'any',
  RequestTokenLog: 'any',
  RequestTokenLogConnection: 'any',
  RequestTokenLogEdge: 'any',
  PageInfo: 'any',
  Redemption: 'any',
  CreateRequestTokenSuccess: 'any',
  RevokeRequestTokenSuccess: 'any',
  RecordResponseStatusSuccess: 'any',
  ForgetUserSuccess: 'any',
  Inspection: 'any',
  Error: 'any',
  ValidationError: 'any',
  ValidationIssue: 'any',
  NotFoundError: 'any',
  TokenRejectedError: 'any',
  InvalidJwtError: 'any',
  UsageStats: 'any',
  UsageBucket: 'any',
  UsageTotals: 'any',
  UsageCounts: 'any',
  ScopeUsage: 'any',
  ErrorCodeCount: 'any',
  ResponseStatusCounts: 'any',
  RequestTokenLookup: 'any',
  JwtClaims: 'any',
  RevokeRequestTokensSuccess: 'any',
  Viewer: 'any',
};

export function ruleFor(typeName: string, fieldName: string, handedOver = false): Rule {
  const own = FIELD_RULES[`${typeName}.${fieldName}`];
  if (own) return own;
  if (handedOver) return 'any';
  return TYPE_RULES[typeName] ?? 'admin';
}

/** The permission a rule needs that the caller lacks, if any. */
const refused = (rule: Rule, caller: Caller) => (rule === 'any' || hasPermission(caller, rule) ? null : rule);

export interface SelectedField {
  type: string;
  field: string;
  /** Reached through a HANDED_OVER result. */
  handedOver: boolean;
}

/**
 * Every Type.field a document's operations select, fragments included, with the result that led there
 * (introspection fields excepted). A fragment is walked once per kind of place it is spread in.
 */
export function selectedFields(schema: GraphQLSchema, document: DocumentNode): SelectedField[] {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  const fields: SelectedField[] = [];
  const walked = new Set<string>();
  const walk = (set: SelectionSetNode, parent: GraphQLNamedType | null | undefined, handedOver: boolean) => {
    if (!parent) return;
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        if (name.startsWith('__') || parent.name.startsWith('__')) continue;
        fields.push({ type: parent.name, field: name, handedOver });
        if (!selection.selectionSet || !(isObjectType(parent) || isInterfaceType(parent))) continue;
        const definition = parent.getFields()[name];
        if (definition) walk(selection.selectionSet, getNamedType(definition.type), HANDED_OVER.has(`${parent.name}.${name}`));
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        walk(selection.selectionSet, selection.typeCondition ? schema.getType(selection.typeCondition.name.value) : parent, handedOver);
      } else {
        const fragment = fragments.get(selection.name.value);
        const key = `${selection.name.value}|${handedOver}`;
        if (!fragment || walked.has(key)) continue;
        walked.add(key);
        walk(fragment.selectionSet, schema.getType(fragment.typeCondition.name.value), handedOver);
      }
    }
  };
  for (const d of document.definitions) {
    if (d.kind !== Kind.OPERATION_DEFINITION) continue;
    const root = d.operation === 'query' ? schema.getQueryType() : d.operation === 'mutation' ? schema.getMutationType() : schema.getSubscriptionType();
    walk(d.selectionSet, root, false);
  }
  return fields;
}

/**
 * The FORBIDDEN error for the first field of `document` the caller may not use, or null. Results are remembered per
 * parsed document (Yoga caches those) and permission set, so the hot path does not walk the document each time.
 */
export function createAuthorizer() {
  const cache = new WeakMap<DocumentNode, Map<string, GraphQLError | null>>();
  // The authenticator caches a caller, permissions and all: its permission set's key is built once, not per request.
  const keys = new WeakMap<readonly string[], string>();
  return function authorize(schema: GraphQLSchema, document: DocumentNode, caller: Caller): GraphQLError | null {
    let cacheKey = keys.get(caller.permissions);
    if (cacheKey === undefined) keys.set(caller.permissions, (cacheKey = [...caller.permissions].sort().join(',')));
    let byPermissions = cache.get(document);
    if (byPermissions?.has(cacheKey)) return byPermissions.get(cacheKey)!;
    let error: GraphQLError | null = null;
    for (const { type, field, handedOver } of selectedFields(schema, document)) {
      const missing = refused(ruleFor(type, field, handedOver), caller);
      if (missing) {
        error = new GraphQLError(`This API key lacks the "${missing}" permission needed for ${type}.${field}.`, {
          extensions: { code: 'FORBIDDEN', http: { status: 403 } },
        });
        break;
      }
    }
    if (!byPermissions) cache.set(document, (byPermissions = new Map()));
    byPermissions.set(cacheKey, error);
    return error;
  };
}
