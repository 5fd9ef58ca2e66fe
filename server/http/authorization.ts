import {
  GraphQLError,
  TypeInfo,
  getNamedType,
  visit,
  visitWithTypeInfo,
  type DocumentNode,
  type GraphQLSchema,
} from 'graphql';
import type { Permission } from '../database/entities/api-key.js';
import { hasPermission, type Caller } from '../domain/api-keys.js';

/**
 * Who may use what, in one place. Every field a request selects (Type.field, fragments included) must be allowed:
 * first by its own rule, else by its type's rule; anything without a rule is for admin keys only. So a field added
 * later is closed until someone opens it here.
 *
 * `any`: every authenticated key. Admin keys may use everything.
 */
export type Rule = Permission | 'any';

export const FIELD_RULES: Record<string, Rule> = {
  'Query.requestToken': 'read',
  'Query.requestTokens': 'read',
  'Query.requestTokenLogs': 'read',
  'RequestToken.logs': 'read',
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

/** Types whose fields are open to any key that may reach them through an allowed field. */
export const TYPE_RULES: Record<string, Rule> = {
  RequestToken: 'any',
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

export function ruleFor(typeName: string, fieldName: string): Rule {
  return FIELD_RULES[`${typeName}.${fieldName}`] ?? TYPE_RULES[typeName] ?? 'admin';
}

/** The permission a rule needs that the caller lacks, if any. */
const refused = (rule: Rule, caller: Caller) => (rule === 'any' || hasPermission(caller, rule) ? null : rule);

/** Every Type.field a document selects, in order, fragments included (introspection fields excepted). */
export function selectedFields(schema: GraphQLSchema, document: DocumentNode): { type: string; field: string }[] {
  const typeInfo = new TypeInfo(schema);
  const fields: { type: string; field: string }[] = [];
  visit(
    document,
    visitWithTypeInfo(typeInfo, {
      Field(node) {
        const parent = typeInfo.getParentType();
        if (!parent || node.name.value.startsWith('__') || parent.name.startsWith('__')) return;
        fields.push({ type: getNamedType(parent).name, field: node.name.value });
      },
    }),
  );
  return fields;
}

/**
 * The FORBIDDEN error for the first field of `document` the caller may not use, or null. Results are remembered per
 * parsed document (Yoga caches those) and permission set, so the hot path does not walk the document each time.
 */
export function createAuthorizer() {
  const cache = new WeakMap<DocumentNode, Map<string, GraphQLError | null>>();
  return function authorize(schema: GraphQLSchema, document: DocumentNode, caller: Caller): GraphQLError | null {
    const cacheKey = [...caller.permissions].sort().join(',');
    let byPermissions = cache.get(document);
    if (byPermissions?.has(cacheKey)) return byPermissions.get(cacheKey)!;
    let error: GraphQLError | null = null;
    for (const { type, field } of selectedFields(schema, document)) {
      const missing = refused(ruleFor(type, field), caller);
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
