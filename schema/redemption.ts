import { errorTypeMap, wrapErrorIfMatches } from '@pothos/plugin-errors';
import { TokenRejection, ValidationError } from '../server/domain/errors.js';
import { redeemToken, type Redemption } from '../server/domain/redeem.js';
import { builder } from './builder.js';
import { TokenRejectedErrorRef, ValidationErrorRef } from './errors.js';
import { LoginModeEnum, RequestTokenRef } from './request-token.js';
import { JSONScalar } from './scalars.js';

export const RedemptionRef = builder.objectRef<Redemption>('Redemption').implement({
  fields: (t) => ({
    id: t.exposeID('id', { description: 'Pass this to recordResponseStatus once the response is sent.' }),
    token: t.field({ type: RequestTokenRef, resolve: (r) => r.token }),
    loginMode: t.expose('loginMode', { type: LoginModeEnum }),
    authenticateAs: t.exposeString('authenticateAs', {
      nullable: true,
      description: 'The user the client application should treat as the requester; null for LoginMode.NONE.',
    }),
    data: t.expose('data', { type: JSONScalar, nullable: true }),
    usesRemaining: t.exposeInt('usesRemaining'),
  }),
});

const RedeemRequestTokenInput = builder.inputType('RedeemRequestTokenInput', {
  fields: (t) => ({
    jwt: t.string({ required: true }),
    scope: t.string({ required: true, description: "The scope of the endpoint being served; must equal the token's scope." }),
    url: t.string({
      description:
        "The URL being requested; checked against the token's targetUrl when it has one (required for such tokens).",
    }),
    userId: t.string({ description: 'The user already signed in at the client application, if any.' }),
    clientIp: t.string(),
    userAgent: t.string(),
    idempotencyKey: t.string({
      description:
        'Makes retries safe: a retry with the same key for the same token returns the original Redemption (same id) and ' +
        'consumes nothing more; the same key with other parameters is a ValidationError. Kept at least 24 hours. ' +
        'At most 255 characters.',
    }),
  }),
});

// The hot path's result union, built by hand rather than by the errors plugin: a refusal is a TokenRejection (plain
// data, see server/domain/errors.ts) and is answered as it is, with no proxy. A ValidationError (rare) is still handed over
// the plugin's way, which the input screen does too (schema/input-screen.ts).
const RedeemRequestTokenResult = builder.unionType('RedeemRequestTokenResult', {
  types: [TokenRejectedErrorRef, ValidationErrorRef, RedemptionRef],
  resolveType: (value) =>
    value instanceof TokenRejection ? TokenRejectedErrorRef : errorTypeMap.has(value) ? ValidationErrorRef : RedemptionRef,
});

builder.mutationField('redeemRequestToken', (t) =>
  t.field({
    type: RedeemRequestTokenResult,
    args: { input: t.arg({ type: RedeemRequestTokenInput, required: true }) },
    extensions: { answersValidation: true },
    resolve: async (_root, { input }, ctx) => {
      try {
        return await redeemToken(ctx, input);
      } catch (error) {
        return wrapErrorIfMatches(error, [ValidationError]) as ValidationError;
      }
    },
  }),
);
