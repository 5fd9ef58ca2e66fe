import { ValidationError } from '../server/domain/errors.js';
import { revokeTokens } from '../server/domain/bulk-revoke.js';
import { builder } from './builder.js';
import { DateTime } from './scalars.js';

const RevokeRequestTokensFilter = builder.inputType('RevokeRequestTokensFilter', {
  description: 'Tokens matching every given field are revoked; at least one field is required.',
  fields: (t) => ({
    userId: t.string(),
    scope: t.string(),
    issuedBefore: t.field({ type: DateTime, description: 'Exclusive.' }),
  }),
});

const RevokeRequestTokensSuccess = builder.objectRef<{ revokedCount: number }>('RevokeRequestTokensSuccess').implement({
  fields: (t) => ({
    revokedCount: t.exposeInt('revokedCount', {
      description: 'Tokens revoked by this call; tokens that were already revoked are not counted.',
    }),
  }),
});

builder.mutationField('revokeRequestTokens', (t) =>
  t.field({
    type: RevokeRequestTokensSuccess,
    description: 'Bulk revocation, in one statement.',
    errors: { types: [ValidationError], union: { name: 'RevokeRequestTokensResult' } },
    args: { filter: t.arg({ type: RevokeRequestTokensFilter, required: true }) },
    resolve: (_root, { filter }, ctx) => revokeTokens(ctx, filter),
  }),
);
