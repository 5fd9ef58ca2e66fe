import { NotFoundError, ValidationError } from '../server/domain/errors.js';
import { KEY_STATES, listSigningKeys, SIGNING_ALGORITHMS, type SigningKeyRecord } from '../server/domain/signing-keys.js';
import { builder } from './builder.js';
import { DateTime } from './scalars.js';

export const SigningAlgorithmEnum = builder.enumType('SigningAlgorithm', { values: SIGNING_ALGORITHMS });

export const SigningKeyStateEnum = builder.enumType('SigningKeyState', {
  description: 'ACTIVE signs new tokens (one key); VERIFY only verifies; RETIRED is refused.',
  values: Object.fromEntries(KEY_STATES.map((s) => [s.toUpperCase(), { value: s }])) as Record<
    Uppercase<(typeof KEY_STATES)[number]>,
    { value: (typeof KEY_STATES)[number] }
  >,
});

export const SigningKeyRef = builder.objectRef<SigningKeyRecord>('SigningKey').implement({
  description: 'A key of the signing-key ring. Its material is never exposed; public keys are at /.well-known/jwks.json.',
  fields: (t) => ({
    kid: t.exposeString('kid'),
    algorithm: t.expose('algorithm', { type: SigningAlgorithmEnum }),
    state: t.expose('state', { type: SigningKeyStateEnum }),
    createdAt: t.expose('createdAt', { type: DateTime }),
    retiredAt: t.expose('retiredAt', { type: DateTime, nullable: true }),
  }),
});

const RotateSigningKeyInput = builder.inputType('RotateSigningKeyInput', {
  fields: (t) => ({ algorithm: t.field({ type: SigningAlgorithmEnum, defaultValue: 'HS256' }) }),
});

const SigningKeySuccess = (name: string) =>
  builder.objectRef<{ key: SigningKeyRecord }>(name).implement({
    fields: (t) => ({ key: t.field({ type: SigningKeyRef, resolve: (r) => r.key }) }),
  });
const RotateSigningKeySuccess = SigningKeySuccess('RotateSigningKeySuccess');
const RetireSigningKeySuccess = SigningKeySuccess('RetireSigningKeySuccess');

builder.queryField('signingKeys', (t) =>
  t.field({
    type: [SigningKeyRef],
    description: 'Admin keys only.',
    resolve: (_root, _args, ctx) => listSigningKeys(ctx),
  }),
);

builder.mutationFields((t) => ({
  rotateSigningKey: t.field({
    type: RotateSigningKeySuccess,
    description: 'Admin keys only. A new key signs from now on; the previous one keeps verifying links already sent.',
    errors: { types: [ValidationError], union: { name: 'RotateSigningKeyResult' } },
    args: { input: t.arg({ type: RotateSigningKeyInput }) },
    resolve: async (_root, { input }, ctx) => ({ key: await ctx.codec.ring.rotate(input?.algorithm ?? 'HS256') }),
  }),
  retireSigningKey: t.field({
    type: RetireSigningKeySuccess,
    description: 'Admin keys only. Every token signed with the key is refused from now on.',
    errors: { types: [NotFoundError, ValidationError], union: { name: 'RetireSigningKeyResult' } },
    args: { kid: t.arg.string({ required: true }) },
    resolve: async (_root, { kid }, ctx) => ({ key: await ctx.codec.ring.retire(kid) }),
  }),
}));
