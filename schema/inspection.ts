import { rejectionMessage, ValidationError } from '../server/domain/errors.js';
import { inspectToken, type Inspection } from '../server/domain/inspect.js';
import { builder } from './builder.js';
import { ErrorCodeEnum } from './errors.js';
import { RequestTokenRef, TokenStatusEnum } from './request-token.js';

export const InspectionRef = builder.objectRef<Inspection>('Inspection').implement({
  description: 'How a redemption with the same input would end right now. Inspecting consumes and logs nothing.',
  fields: (t) => ({
    redeemable: t.exposeBoolean('redeemable'),
    // Not `code`/`message`: those would clash with Error's non-null fields when a client selects both in one query.
    rejectionCode: t.expose('code', {
      type: ErrorCodeEnum,
      nullable: true,
      description: 'The code redeemRequestToken would refuse with (same checks, same order); null when redeemable.',
    }),
    rejectionMessage: t.string({
      nullable: true,
      resolve: (i) => (i.code === null ? null : rejectionMessage(i.code)),
    }),
    status: t.field({
      type: TokenStatusEnum,
      nullable: true,
      description: "The token's status; null when the JWT could not be tied to a stored token.",
      resolve: (i) => i.token?.status ?? null,
    }),
    usesRemaining: t.exposeInt('usesRemaining', { nullable: true }),
    token: t.field({ type: RequestTokenRef, nullable: true, resolve: (i) => i.token }),
  }),
});

const InspectRequestTokenInput = builder.inputType('InspectRequestTokenInput', {
  fields: (t) => ({
    jwt: t.string({ required: true }),
    scope: t.string({ required: true }),
    url: t.string(),
    userId: t.string(),
  }),
});

builder.queryField('inspectRequestToken', (t) =>
  t.field({
    type: InspectionRef,
    description:
      'Runs every check redeemRequestToken runs and reports the outcome, consuming nothing: for confirmation pages ' +
      'and anything that must look at a link without using it (e.g. email security scanners).',
    errors: { types: [ValidationError], union: { name: 'InspectRequestTokenResult' } },
    args: { input: t.arg({ type: InspectRequestTokenInput, required: true }) },
    resolve: (_root, { input }, ctx) => inspectToken(ctx, input),
  }),
);
