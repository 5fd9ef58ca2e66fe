import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { EntityManager } from '@mikro-orm/postgresql';
import { ApiKey } from '../database/entities/api-key.js';
import type { Config } from '../config.js';
import { MIN_SECRET_BYTES } from '../config.js';
import { createApiKey, parseApiKey } from './api-keys.js';

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

/**
 * Makes sure an admin key exists: REQUEST_TOKEN_ADMIN_KEY when set; otherwise, when there is no key at all, a new one,
 * printed once and written to DATA_DIR/admin-api-key.
 */
export async function ensureAdminKey(em: EntityManager, config: Config, log: (line: string) => void): Promise<void> {
  if (config.adminKey) {
    const { id } = parseApiKey(config.adminKey)!;
    const existing = await em.findOne(ApiKey, { id });
    if (existing) await em.nativeDelete(ApiKey, { id });
    await createApiKey(em, { name: 'admin (REQUEST_TOKEN_ADMIN_KEY)', permissions: ['admin'], key: config.adminKey });
    return;
  }
  if ((await em.count(ApiKey, {})) > 0) return;
  const { key } = await createApiKey(em, { name: 'admin (first start)', permissions: ['admin'] });
  await mkdir(config.dataDir, { recursive: true });
  const path = join(config.dataDir, ADMIN_KEY_FILE);
  await writeFile(path, `${key}\n`, { mode: 0o600 });
  log(`created an admin API key (shown once, also written to ${path}):\n\n    ${key}\n`);
}
