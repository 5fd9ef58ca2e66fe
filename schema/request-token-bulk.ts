import { ValidationError } from '../server/domain/errors.js';
import { issueTokens, MAX_BULK_ISSUE } from '../server/domain/bulk-issue.js';
import type { Issued } from '../server/domain/tokens.js';
import { builder } from './builder.js';
import { CreateRequestTokenInput, CreateRequestTokenSuccess } from './request-token.js';

const CreateRequestTokensSuccess = builder.objectRef<{ issued: Issued[] }>('CreateRequestTokensSuccess').implement({
  fields: (t) => ({
    issued: t.field({
      type: [CreateRequestTokenSuccess],
      description: 'One entry per input, in input order.',
      resolve: (r) => r.issued,
    }),
  }),
});

builder.mutationField('createRequestTokens', (t) =>
  t.field({
    type: CreateRequestTokensSuccess,
    description:
      `Issues up to ${MAX_BULK_ISSUE} tokens in one transaction: all or none. A ValidationError lists every offending ` +
      'field with the index of its input in the path, e.g. ["inputs", "3", "maxUses"].',
    errors: { types: [ValidationError], union: { name: 'CreateRequestTokensResult' } },
    args: { inputs: t.arg({ type: [CreateRequestTokenInput], required: true }) },
    resolve: async (_root, { inputs }, ctx) => ({ issued: await issueTokens(ctx, inputs) }),
  }),
);
