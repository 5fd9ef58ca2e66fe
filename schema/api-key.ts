import { PERMISSIONS } from '../server/database/entities/api-key.js';
import { NotFoundError, ValidationError } from '../server/domain/errors.js';
import { createKey, listKeys, revokeKey, type ApiKeyRecord } from '../server/domain/clients.js';
import { builder } from './builder.js';
import { DateTime } from './scalars.js';

export const ApiKeyPermissionEnum = builder.enumType('ApiKeyPermission', {
  description: 'What a key may do. ADMIN manages clients, keys and signing keys, and sees every tenant.',
  values: Object.fromEntries(PERMISSIONS.map((p) => [p.toUpperCase(), { value: p }])) as Record<
    Uppercase<(typeof PERMISSIONS)[number]>,
    { value: (typeof PERMISSIONS)[number] }
  >,
});

export const ApiKeyRef = builder.objectRef<ApiKeyRecord>('ApiKey').implement({
  description: 'An API key. Its secret is shown once, when it is created, and never stored in clear.',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The <id> of rt_<id>_<secret>.' }),
    name: t.exposeString('name'),
    clientId: t.exposeID('clientId', { nullable: true, description: 'Null for admin keys.' }),
    permissions: t.field({ type: [ApiKeyPermissionEnum], resolve: (k) => k.permissions }),
    createdAt: t.expose('createdAt', { type: DateTime }),
    lastUsedAt: t.expose('lastUsedAt', { type: DateTime, nullable: true, description: 'Updated at most once a minute.' }),
    expiresAt: t.expose('expiresAt', { type: DateTime, nullable: true }),
    revokedAt: t.expose('revokedAt', { type: DateTime, nullable: true }),
    rateLimitPerMinute: t.exposeInt('rateLimitPerMinute', {
      nullable: true,
      description: "Null: the server's RATE_LIMIT_PER_MINUTE; 0: unlimited.",
    }),
  }),
});

const CreateApiKeyInput = builder.inputType('CreateApiKeyInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    clientId: t.id({ description: 'Required unless the permissions include ADMIN.' }),
    permissions: t.field({ type: [ApiKeyPermissionEnum], required: true }),
    expiresAt: t.field({ type: DateTime }),
    rateLimitPerMinute: t.int(),
  }),
});

const CreateApiKeySuccess = builder.objectRef<{ apiKey: ApiKeyRecord; key: string }>('CreateApiKeySuccess').implement({
  fields: (t) => ({
    apiKey: t.field({ type: ApiKeyRef, resolve: (r) => r.apiKey }),
    key: t.exposeString('key', { description: 'The key in clear (rt_<id>_<secret>): shown this once only.' }),
  }),
});

const RevokeApiKeySuccess = builder.objectRef<{ apiKey: ApiKeyRecord }>('RevokeApiKeySuccess').implement({
  fields: (t) => ({ apiKey: t.field({ type: ApiKeyRef, resolve: (r) => r.apiKey }) }),
});

builder.queryField('apiKeys', (t) =>
  t.field({
    type: [ApiKeyRef],
    description: 'Admin keys only.',
    args: { clientId: t.arg.id() },
    resolve: (_root, { clientId }, ctx) => listKeys(ctx, { clientId: clientId == null ? null : String(clientId) }),
  }),
);

builder.mutationFields((t) => ({
  createApiKey: t.field({
    type: CreateApiKeySuccess,
    description: 'Admin keys only.',
    errors: { types: [ValidationError], union: { name: 'CreateApiKeyResult' } },
    args: { input: t.arg({ type: CreateApiKeyInput, required: true }) },
    resolve: (_root, { input }, ctx) =>
      createKey(ctx, {
        ...input,
        clientId: input.clientId == null ? null : String(input.clientId),
      }),
  }),
  revokeApiKey: t.field({
    type: RevokeApiKeySuccess,
    description: 'Admin keys only. Takes effect at once in this process, within seconds in others.',
    errors: { types: [NotFoundError], union: { name: 'RevokeApiKeyResult' } },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_root, { id }, ctx) => ({ apiKey: await revokeKey(ctx, String(id)) }),
  }),
}));
