import type { MikroORM } from '@mikro-orm/postgresql';
import type pg from 'pg';
import { PERMISSIONS, type Permission } from '../database/entities/api-key.js';
import { Issues, NotFoundError } from './errors.js';
import { checkString } from './validation.js';
import { createApiKey, type Authenticator } from './api-keys.js';

/** Tenants and their API keys: the admin side. Key secrets never leave createKey except in its return value. */

export interface ClientRecord {
  id: string;
  name: string;
  createdAt: Date;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  clientId: string | null;
  permissions: Permission[];
  createdAt: Date;
  lastUsedAt: Date | null;
  expiresAt: Date | null;
  revokedAt: Date | null;
  rateLimitPerMinute: number | null;
}

const isId = (id: string) => /^\d{1,18}$/.test(id);

const clientFromRow = (row: Record<string, any>): ClientRecord => ({
  id: String(row.id),
  name: row.name,
  createdAt: row.created_at,
});

const KEY_COLUMNS =
  'id, name, client_id, permissions, created_at, last_used_at, expires_at, revoked_at, rate_limit_per_minute';

const keyFromRow = (row: Record<string, any>): ApiKeyRecord => ({
  id: row.id,
  name: row.name,
  clientId: row.client_id === null ? null : String(row.client_id),
  permissions: row.permissions,
  createdAt: row.created_at,
  lastUsedAt: row.last_used_at,
  expiresAt: row.expires_at,
  revokedAt: row.revoked_at,
  rateLimitPerMinute: row.rate_limit_per_minute,
});

export async function createClient(pool: pg.Pool, input: { name: string }): Promise<ClientRecord> {
  const issues = new Issues();
  checkString(issues, ['input', 'name'], input.name, { min: 1, max: 100 });
  issues.throwIfAny();
  const { rows } = await pool.query(
    `insert into api_client (name) values ($1) on conflict (name) do nothing returning id, name, created_at`,
    [input.name],
  );
  if (!rows[0]) {
    issues.add(['input', 'name'], 'is already taken');
    issues.throwIfAny();
  }
  return clientFromRow(rows[0]);
}

export async function listClients(pool: pg.Pool): Promise<ClientRecord[]> {
  const { rows } = await pool.query('select id, name, created_at from api_client order by id');
  return rows.map(clientFromRow);
}

/** By id or by name (the CLI takes either). */
export async function findClient(pool: pg.Pool, idOrName: string): Promise<ClientRecord | null> {
  const { rows } = await pool.query(
    `select id, name, created_at from api_client where ($1::bigint is not null and id = $1::bigint) or name = $2`,
    [isId(idOrName) ? idOrName : null, idOrName],
  );
  return rows[0] ? clientFromRow(rows[0]) : null;
}

export interface NewKeyInput {
  name: string;
  clientId?: string | null;
  permissions: string[];
  expiresAt?: Date | null;
  rateLimitPerMinute?: number | null;
}

/** Creates a key (on a unit of work of its own) and returns it in clear: the only time it is shown. */
export async function createKey(
  { orm, pool }: { orm: MikroORM; pool: pg.Pool },
  input: NewKeyInput,
  now = new Date(),
): Promise<{ apiKey: ApiKeyRecord; key: string }> {
  const issues = new Issues();
  checkString(issues, ['input', 'name'], input.name, { min: 1, max: 100 });
  const permissions = [...new Set(input.permissions)];
  if (permissions.length === 0) issues.add(['input', 'permissions'], 'must name at least one permission');
  for (const p of permissions) {
    if (!(PERMISSIONS as readonly string[]).includes(p)) {
      issues.add(['input', 'permissions'], `unknown permission "${String(p).slice(0, 40)}" (use ${PERMISSIONS.join(', ')})`);
    }
  }
  const isAdmin = permissions.includes('admin');
  if (input.clientId == null && !isAdmin) issues.add(['input', 'clientId'], 'is required unless the key is an admin key');
  if (input.clientId != null && !(isId(input.clientId) && (await findClient(pool, input.clientId)))) {
    issues.add(['input', 'clientId'], 'no such client');
  }
  if (input.expiresAt && input.expiresAt <= now) issues.add(['input', 'expiresAt'], 'must be in the future');
  if (input.rateLimitPerMinute != null && (!Number.isInteger(input.rateLimitPerMinute) || input.rateLimitPerMinute < 0)) {
    issues.add(['input', 'rateLimitPerMinute'], 'must be a whole number (0: unlimited)');
  }
  issues.throwIfAny();
  const { key } = await createApiKey(orm.em.fork(), {
    name: input.name,
    permissions: permissions as Permission[],
    clientId: input.clientId ?? null,
    expiresAt: input.expiresAt ?? null,
    rateLimitPerMinute: input.rateLimitPerMinute ?? null,
  });
  const { rows } = await pool.query(`select ${KEY_COLUMNS} from api_key where id = $1`, [key.split('_')[1]]);
  return { apiKey: keyFromRow(rows[0]), key };
}

export async function listKeys(pool: pg.Pool, filter: { clientId?: string | null } = {}): Promise<ApiKeyRecord[]> {
  if (filter.clientId != null && !isId(filter.clientId)) return [];
  const { rows } = await pool.query(
    `select ${KEY_COLUMNS} from api_key where $1::bigint is null or client_id = $1::bigint order by created_at, id`,
    [filter.clientId ?? null],
  );
  return rows.map(keyFromRow);
}

/**
 * Revokes a key; revoking twice keeps the first time. With this process's authenticator, its cached checks are
 * forgotten, so the key is refused here at once (other processes within their cache's 5 s).
 */
export async function revokeKey(
  { pool, authenticator }: { pool: pg.Pool; authenticator?: Authenticator },
  id: string,
): Promise<ApiKeyRecord> {
  if (!/^[A-Za-z0-9]{1,32}$/.test(id)) throw new NotFoundError('API key');
  const { rows } = await pool.query(
    `update api_key set revoked_at = coalesce(revoked_at, now()) where id = $1 returning ${KEY_COLUMNS}`,
    [id],
  );
  if (!rows[0]) throw new NotFoundError('API key');
  authenticator?.clear();
  return keyFromRow(rows[0]);
}
