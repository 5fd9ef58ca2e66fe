import { defineEntity, p, type InferEntity } from '@mikro-orm/core';

export const SIGNING_ALGORITHMS = ['HS256', 'EdDSA', 'ES256'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];
export const KEY_STATES = ['active', 'verify', 'retired'] as const;
export type KeyState = (typeof KEY_STATES)[number];

/**
 * A key of the signing-key ring (server/domain/signing-keys.ts). Exactly one is `active`: a partial unique index holds
 * that. Key "default" has no stored material (it is REQUEST_TOKEN_SECRET).
 */
export const SigningKey = defineEntity({
  name: 'SigningKey',
  tableName: 'signing_key',
  properties: {
    kid: p.string().length(64).primary(),
    algorithm: p.enum([...SIGNING_ALGORITHMS]),
    state: p.enum([...KEY_STATES]),
    /** AES-256-GCM of the secret or private key, the kid as associated data. */
    encryptedKey: p.text().nullable().lazy(),
    publicJwk: p.json<Record<string, unknown>>().nullable(),
    createdAt: p.datetime().defaultRaw('now()'),
    retiredAt: p.datetime().nullable(),
  },
  uniques: [
    {
      name: 'signing_key_one_active',
      expression: `create unique index "signing_key_one_active" on "signing_key" ("state") where "state" = 'active'`,
    },
  ],
});

export type SigningKey = InferEntity<typeof SigningKey>;
