import { TokenRejectedError, ValidationError } from '../server/errors.js';
import { redeemToken, type Redemption } from '../server/services/redeem.js';
import { builder } from './builder.js';
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

builder.mutationField('redeemRequestToken', (t) =>
  t.field({
    type: RedemptionRef,
    errors: { types: [TokenRejectedError, ValidationError], union: { name: 'RedeemRequestTokenResult' } },
    args: { input: t.arg({ type: RedeemRequestTokenInput, required: true }) },
    resolve: (_root, { input }, ctx) => redeemToken(ctx, input),
  }),
);
