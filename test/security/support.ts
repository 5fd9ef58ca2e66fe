import { createHmac } from 'node:crypto';
import { expect } from 'vitest';
import { createKey, createClient } from '../../server/domain/clients.js';
import type { TestServer } from '../support/harness.js';

/** What an attack must never change: uses consumed and successful redemptions logged. */
export async function consumption(server: TestServer) {
  const [row] = await server.sql(`select
      (select coalesce(sum(used_to_date), 0)::int from request_token) as used,
      (select count(*)::int from request_token_log where error_code is null) as successes,
      (select count(*)::int from request_token where revoked_at is not null) as revoked`);
  return row as { used: number; successes: number; revoked: number };
}

/** Runs an attack and asserts that it consumed nothing and logged no success. */
export async function withoutConsumption<T>(server: TestServer, attack: () => Promise<T>): Promise<T> {
  const before = await consumption(server);
  const result = await attack();
  expect(await consumption(server)).toEqual(before);
  return result;
}

export const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A compact JWS signed with HMAC-SHA256 over `secret`, whatever the header says. */
export function hs256(secret: string | Buffer, header: Record<string, unknown>, payload: unknown): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** A client of its own and a key for it with the given permissions. */
export async function tenantKey(server: TestServer, name: string, permissions: string[]) {
  const client = await createClient({ orm: server.db.orm, tenant: null }, { name });
  const { key } = await createKey({ orm: server.db.orm, tenant: null }, {
    name: `${name} key`,
    clientId: client.id,
    permissions,
  });
  return { client, key };
}

export async function keyFor(server: TestServer, clientId: string | null, permissions: string[], extra = {}) {
  const { key, apiKey } = await createKey({ orm: server.db.orm, tenant: null }, {
    name: `key ${permissions.join(',')}`,
    clientId,
    permissions,
    ...extra,
  });
  return { key, id: apiKey.id };
}

/** The typename of a mutation's result, or the GraphQL error code when there is none. */
export function outcome(res: { status: number; data?: any; errors?: any[] }, field: string): string {
  const value = res.data?.[field];
  if (value?.__typename) return value.code ? `${value.__typename}:${value.code}` : value.__typename;
  return `${res.status}:${res.errors?.[0]?.extensions?.code ?? 'none'}`;
}
