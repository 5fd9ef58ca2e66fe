import { ValidationError } from '../server/domain/errors.js';
import { forgetUser, type Forgotten } from '../server/domain/forget-user.js';
import { builder } from './builder.js';

const ForgetUserSuccess = builder.objectRef<Forgotten>('ForgetUserSuccess').implement({
  fields: (t) => ({
    revokedTokens: t.exposeInt('revokedTokens'),
    anonymisedLogs: t.exposeInt('anonymisedLogs'),
  }),
});

builder.mutationField('forgetUser', (t) =>
  t.field({
    type: ForgetUserSuccess,
    description:
      "Revokes the user's tokens (of the caller's client) and anonymises their log rows (user id, client IP, user " +
      'agent) while keeping the counts.',
    errors: { types: [ValidationError], union: { name: 'ForgetUserResult' } },
    args: { userId: t.arg.string({ required: true }) },
    resolve: (_root, { userId }, ctx) => forgetUser(ctx, userId),
  }),
);
