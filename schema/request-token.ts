import { GraphQLError } from 'graphql';
import { type LOGIN_MODES, TOKEN_STATUSES } from '../server/database/entities/request-token.js';
import { ValidationError, NotFoundError } from '../server/domain/errors.js';
import {
  getToken,
  issueToken,
  listTokens,
  revokeToken,
  tokenJwt,
  type Issued,
  type TokenProjection,
  type TokenRecord,
} from '../server/domain/tokens.js';
import { SigningKeyRetiredError } from '../server/domain/jwt.js';
import { builder } from './builder.js';
import { connectionType, pageCost, selectsTotalCount } from './paging.js';
import { DateTime, JSONScalar } from './scalars.js';

export const LoginModeEnum = builder.enumType('LoginMode', {
  description: 'How a redeemed token identifies its user to the client application.',
  values: {
    NONE: { description: 'The link carries data only; no user is identified (a public link).' },
    REQUEST: { description: "The token's user is identified for the one request that redeems it." },
    SESSION: { description: 'The token logs its user in for a whole session; short-lived by default.' },
  } as const satisfies Record<(typeof LOGIN_MODES)[number], unknown>,
});

export const TokenStatusEnum = builder.enumType('TokenStatus', {
  description: 'Where a token stands now.',
  values: TOKEN_STATUSES,
});

export const RequestTokenRef = builder.objectRef<TokenRecord>('RequestToken').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    scope: t.exposeString('scope'),
    targetUrl: t.exposeString('targetUrl', { nullable: true }),
    userId: t.exposeString('userId', {
      nullable: true,
      description: "The client application's id of the intended recipient (the JWT 'aud').",
    }),
    loginMode: t.expose('loginMode', { type: LoginModeEnum }),
    data: t.expose('data', { type: JSONScalar, nullable: true, description: 'Server-side payload; never placed in the JWT.' }),
    maxUses: t.exposeInt('maxUses'),
    usedToDate: t.exposeInt('usedToDate'),
    issuedAt: t.expose('issuedAt', { type: DateTime }),
    notBefore: t.expose('notBefore', { type: DateTime, nullable: true }),
    expiresAt: t.expose('expiresAt', { type: DateTime, nullable: true }),
    revokedAt: t.expose('revokedAt', { type: DateTime, nullable: true }),
    status: t.expose('status', { type: TokenStatusEnum }),
    jwt: t.string({
      description:
        'The signed JWT (header.payload.signature) for this token. Needs the ISSUE permission. A token whose signing ' +
        'key was retired has none: the field answers an error with code SIGNING_KEY_RETIRED.',
      resolve: (token, _args, ctx) =>
        tokenJwt(ctx.codec, token).catch((error: unknown) => {
          if (!(error instanceof SigningKeyRetiredError)) throw error;
          throw new GraphQLError(
            `Token ${token.id} was signed with signing key "${error.kid}", which is retired: its links are refused and it has no JWT any more. Issue a new token.`,
            { extensions: { code: 'SIGNING_KEY_RETIRED' } },
          );
        }),
    }),
  }),
});

/**
 * The RequestToken fields whose resolvers read nothing of the token but its id and scope (the `brief` TokenProjection,
 * server/domain/tokens.ts): a page of logs whose rows' tokens select only these reads those two columns of each.
 */
const BRIEF_FIELDS = new Set(['__typename', 'id', 'scope', 'logs']);

/** How much of each token a page of logs must read for `selected`, the token's fields its query selects. */
export const tokenProjectionFor = (selected: ReadonlySet<string>): TokenProjection =>
  selected.size === 0 ? 'none' : [...selected].every((name) => BRIEF_FIELDS.has(name)) ? 'brief' : 'full';

const RequestTokenConnection = connectionType('RequestToken', RequestTokenRef);

/** Query arguments are not result unions: bad ones are GraphQL errors with a code. */
export async function asQueryError<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ValidationError) {
      throw new GraphQLError(error.message, { extensions: { code: 'BAD_USER_INPUT', issues: error.issues } });
    }
    throw error;
  }
}

const RequestTokenFilter = builder.inputType('RequestTokenFilter', {
  fields: (t) => ({
    scope: t.string(),
    userId: t.string(),
    status: t.field({ type: TokenStatusEnum }),
  }),
});

builder.queryFields((t) => ({
  requestToken: t.field({
    type: RequestTokenRef,
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, ctx) => getToken(ctx, String(id)),
  }),
  requestTokens: t.field({
    type: RequestTokenConnection,
    args: { filter: t.arg({ type: RequestTokenFilter }), first: t.arg.int(), after: t.arg.string() },
    complexity: pageCost,
    resolve: (_root, { filter, first, after }, ctx, info) =>
      asQueryError(() => listTokens(ctx, filter ?? {}, { first, after, count: selectsTotalCount(info) })),
  }),
}));

export const CreateRequestTokenInput = builder.inputType('CreateRequestTokenInput', {
  fields: (t) => ({
    scope: t.string({
      required: true,
      description: "The label that ties the token to the endpoint that may redeem it (the JWT 'sub').",
    }),
    targetUrl: t.string({
      description: 'When given, the token only redeems for this URL, and the result carries it tokenised.',
    }),
    userId: t.string(),
    loginMode: t.field({ type: LoginModeEnum, defaultValue: 'NONE' }),
    maxUses: t.int({ description: "Defaults to the server's configured default." }),
    expiresAt: t.field({ type: DateTime }),
    notBefore: t.field({ type: DateTime }),
    data: t.field({ type: JSONScalar }),
    clientId: t.id({
      description: 'Admin keys only: the client that will own the token (default: the "default" client, id 1).',
    }),
  }),
});

export const CreateRequestTokenSuccess = builder.objectRef<Issued>('CreateRequestTokenSuccess').implement({
  fields: (t) => ({
    token: t.field({ type: RequestTokenRef, resolve: (r) => r.token }),
    jwt: t.exposeString('jwt'),
    url: t.exposeString('url', {
      nullable: true,
      description: "targetUrl with the JWT added as the 'rt' query parameter; null without a targetUrl.",
    }),
  }),
});

const RevokeRequestTokenSuccess = builder.objectRef<{ token: TokenRecord }>('RevokeRequestTokenSuccess').implement({
  fields: (t) => ({ token: t.field({ type: RequestTokenRef, resolve: (r) => r.token }) }),
});

builder.mutationFields((t) => ({
  createRequestToken: t.field({
    type: CreateRequestTokenSuccess,
    errors: { types: [ValidationError], union: { name: 'CreateRequestTokenResult' } },
    args: { input: t.arg({ type: CreateRequestTokenInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      issueToken(ctx, { ...input, clientId: input.clientId == null ? null : String(input.clientId) }),
  }),
  revokeRequestToken: t.field({
    type: RevokeRequestTokenSuccess,
    errors: { types: [NotFoundError], union: { name: 'RevokeRequestTokenResult' } },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, { id }, ctx) => ({ token: await revokeToken(ctx, String(id)) }),
  }),
}));
