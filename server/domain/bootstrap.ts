import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { raw, type EntityManager } from '@mikro-orm/postgresql';
import { ApiKey } from '../database/entities/api-key.js';
import type { Config } from '../config.js';
import { MIN_SECRET_BYTES } from '../config.js';
import { createApiKey, hashApiKeySecret, parseApiKey } from './api-keys.js';

export const SECRET_FILE = 'request-token-secret';
export const ADMIN_KEY_FILE = 'admin-api-key';

/**
 * The signing secret: REQUEST_TOKEN_SECRET, or in development one generated on first start and kept under DATA_DIR,
 * so links survive restarts. (Production refuses to start without the variable; see loadConfig.)
 */
export async function resolveSecret(config: Config, log: (line: string) => void): Promise<string> {
  if (config.secret) return config.secret;
  const path = join(config.dataDir, SECRET_FILE);
  const existing = (await readFile(path, 'utf8').catch(() => '')).trim();
  if (Buffer.byteLength(existing) >= MIN_SECRET_BYTES) return existing;
  await mkdir(config.dataDir, { recursive: true });
  const secret = randomBytes(48).toString('base64url');
  await writeFile(path, `${secret}\n`, { mode: 0o600 });
  log(`generated a development signing secret in ${path} (set REQUEST_TOKEN_SECRET in production)`);
  return secret;
}

/** The name that marks the key made from REQUEST_TOKEN_ADMIN_KEY: a new value of the variable revokes the old one. */
export const ENV_ADMIN_KEY_NAME = 'admin (REQUEST_TOKEN_ADMIN_KEY)';

/**
 * Makes sure an admin key exists: REQUEST_TOKEN_ADMIN_KEY when set; otherwise, when there is no key at all, a new one,
 * printed once and written to DATA_DIR/admin-api-key.
 *
 * The key from the variable is stored once and never rewritten: a restart leaves its row alone, so a revoked key stays
 * revoked and `lastUsedAt` survives. A new value of the variable revokes the key the previous value made. Several
 * instances starting at once on one database insert the same row; the first wins, the others find it.
 */
export async function ensureAdminKey(em: EntityManager, config: Config, log: (line: string) => void): Promise<void> {
  if (config.adminKey) {
    const { id, secret } = parseApiKey(config.adminKey)!;
    const hash = hashApiKeySecret(secret);
    const existing = await em.findOne(ApiKey, { id }, { disableIdentityMap: true });
    if (existing && existing.secretHash === hash) {
      if (existing.revokedAt) {
        log('REQUEST_TOKEN_ADMIN_KEY names a revoked key: it stays refused; set a new one (npm run --silent keygen)');
      }
      return;
    }
    // A transaction of the connection, not `em.transactional`: that one runs in an AsyncLocalStorage (MikroORM's
    // transaction context, and its flush's), and once any AsyncLocalStorage has run, Node keeps promise hooks on for
    // every promise of the process: about 3 % of a refusal's CPU time (docs/hot-path.md). Nothing here is flushed.
    const tx = em.fork();
    await tx.getConnection('write').transactional(async (trx) => {
      tx.setTransactionContext(trx);
      await tx.nativeUpdate(
        ApiKey,
        { name: ENV_ADMIN_KEY_NAME, id: { $ne: id }, revokedAt: null },
        { revokedAt: raw('now()') },
      );
      if (existing) {
        // Same id, another secret: the variable was changed, so this is a new key under an old id.
        await tx.nativeUpdate(
          ApiKey,
          { id },
          { secretHash: hash, name: ENV_ADMIN_KEY_NAME, permissions: ['admin'], clientId: null, expiresAt: null, revokedAt: null },
        );
        return;
      }
      await tx
        .createQueryBuilder(ApiKey)
        .insert({ id, name: ENV_ADMIN_KEY_NAME, secretHash: hash, permissions: ['admin'], clientId: null })
        .onConflict('id')
        .ignore()
        .execute();
    });
    return;
  }
  if ((await em.count(ApiKey, {})) > 0) return;
  const { key } = await createApiKey(em, { name: 'admin (first start)', permissions: ['admin'] });
  await mkdir(config.dataDir, { recursive: true });
  const path = join(config.dataDir, ADMIN_KEY_FILE);
  await writeFile(path, `${key}\n`, { mode: 0o600 });
  log(`created an admin API key (shown once, also written to ${path}):\n\n    ${key}\n`);
}
