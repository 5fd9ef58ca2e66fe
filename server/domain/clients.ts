import { raw, UniqueConstraintViolationException } from '@mikro-orm/core';
import { ApiClient } from '../database/entities/api-client.js';
import { ApiKey, PERMISSIONS, type Permission } from '../database/entities/api-key.js';
import { requestEm, type TenantDeps } from '../database/tenant.js';
import { parseId } from './ids.js';
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

const clientFromEntity = (client: ApiClient): ClientRecord => ({
  id: client.id,
  name: client.name,
  createdAt: client.createdAt,
});

const keyFromEntity = (key: ApiKey): ApiKeyRecord => ({
  id: key.id,
  name: key.name,
  clientId: key.clientId ?? null,
  permissions: key.permissions,
  createdAt: key.createdAt,
  lastUsedAt: key.lastUsedAt ?? null,
  expiresAt: key.expiresAt ?? null,
  revokedAt: key.revokedAt ?? null,
  rateLimitPerMinute: key.rateLimitPerMinute ?? null,
});

/** Reads that must see the row as stored now, not as this request's identity map holds it. */
const FRESH = { disableIdentityMap: true } as const;

export async function createClient(deps: TenantDeps, input: { name: string }): Promise<ClientRecord> {
  const issues = new Issues();
  checkString(issues, ['input', 'name'], input.name, { min: 1, max: 100 });
  issues.throwIfAny();
  const em = requestEm(deps);
  try {
    const id = await em.insert(ApiClient, { name: input.name } as ApiClient);
    return clientFromEntity(await em.findOneOrFail(ApiClient, { id: String(id) }, FRESH));
  } catch (error) {
    if (!(error instanceof UniqueConstraintViolationException)) throw error;
    issues.add(['input', 'name'], 'is already taken');
    issues.throwIfAny();
    throw error;
  }
}

export async function listClients(deps: TenantDeps): Promise<ClientRecord[]> {
  return (await requestEm(deps).find(ApiClient, {}, { ...FRESH, orderBy: { id: 'asc' } })).map(clientFromEntity);
}

/** By id or by name (the CLI takes either). */
export async function findClient(deps: TenantDeps, idOrName: string): Promise<ClientRecord | null> {
  const id = parseId(idOrName);
  const client = await requestEm(deps).findOne(
    ApiClient,
    id === null ? { name: idOrName } : { $or: [{ id }, { name: idOrName }] },
    { ...FRESH, orderBy: { id: 'asc' } },
  );
  return client ? clientFromEntity(client) : null;
}

export interface NewKeyInput {
  name: string;
  clientId?: string | null;
  permissions: string[];
  expiresAt?: Date | null;
  rateLimitPerMinute?: number | null;
}

/** Creates a key and returns it in clear: the only time it is shown. */
export async function createKey(
  deps: TenantDeps,
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
  const clientId = input.clientId == null ? null : parseId(input.clientId);
  if (input.clientId != null && !(clientId !== null && (await requestEm(deps).count(ApiClient, { id: clientId })) === 1)) {
    issues.add(['input', 'clientId'], 'no such client');
  }
  if (input.expiresAt && input.expiresAt <= now) issues.add(['input', 'expiresAt'], 'must be in the future');
  if (input.rateLimitPerMinute != null && (!Number.isInteger(input.rateLimitPerMinute) || input.rateLimitPerMinute < 0)) {
    issues.add(['input', 'rateLimitPerMinute'], 'must be a whole number (0: unlimited)');
  }
  issues.throwIfAny();
  const em = requestEm(deps);
  const { key, apiKey } = await createApiKey(em, {
    name: input.name,
    permissions: permissions as Permission[],
    clientId,
    expiresAt: input.expiresAt ?? null,
    rateLimitPerMinute: input.rateLimitPerMinute ?? null,
  });
  return { apiKey: keyFromEntity(await em.findOneOrFail(ApiKey, { id: apiKey.id }, FRESH)), key };
}

export async function listKeys(deps: TenantDeps, filter: { clientId?: string | null } = {}): Promise<ApiKeyRecord[]> {
  const clientId = filter.clientId == null ? null : parseId(filter.clientId);
  if (filter.clientId != null && clientId === null) return [];
  const keys = await requestEm(deps).find(ApiKey, clientId === null ? {} : { clientId }, {
    ...FRESH,
    orderBy: { createdAt: 'asc', id: 'asc' },
  });
  return keys.map(keyFromEntity);
}

/** Revokes at once in this process (the caller clears its authenticator cache); revoking twice keeps the first time. */
/**
 * Revokes a key; revoking twice keeps the first time. With this process's authenticator, its cached checks are
 * forgotten, so the key is refused here at once (other processes within their cache's 5 s).
 */
export async function revokeKey(
  deps: TenantDeps & { authenticator?: Pick<Authenticator, 'clear'> },
  id: string,
): Promise<ApiKeyRecord> {
  if (!/^[A-Za-z0-9]{1,32}$/.test(id)) throw new NotFoundError('API key');
  const em = requestEm(deps);
  // least(): the stored time when there is one (never in the future), else now(). Not coalesce(): Citus refuses a clock
  // function inside COALESCE or CASE in an UPDATE.
  const revoked = await em.nativeUpdate(ApiKey, { id }, { revokedAt: raw('least(revoked_at, now())') });
  if (!revoked) throw new NotFoundError('API key');
  deps.authenticator?.clear();
  return keyFromEntity(await em.findOneOrFail(ApiKey, { id }, FRESH));
}
