import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { exportJWK, exportPKCS8, generateKeyPair, importJWK, importPKCS8, type JWK } from 'jose';
import type { MikroORM } from '@mikro-orm/postgresql';
import type pg from 'pg';
import { SigningKey } from '../database/entities/signing-key.js';
import { inTransaction } from '../database/transaction.js';
import { Issues, NotFoundError } from './errors.js';

/**
 * The signing-key ring. Each key has a kid, one algorithm and a state: `active` signs new tokens (exactly one),
 * `verify` only verifies (links already sent keep working after a rotation), `retired` is refused.
 *
 * Key "default" is REQUEST_TOKEN_SECRET itself (HS256 over its UTF-8 bytes, never stored), so tokens issued before the
 * ring existed (no kid in their header) keep verifying with it. Every other key's secret or private key is stored
 * encrypted (AES-256-GCM, the kid as associated data) with a key from the environment.
 */

export const SIGNING_ALGORITHMS = ['HS256', 'EdDSA', 'ES256'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];
export const KEY_STATES = ['active', 'verify', 'retired'] as const;
export type KeyState = (typeof KEY_STATES)[number];

import { DEFAULT_KID } from './default-kid.js';
export { DEFAULT_KID };
export const KID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export interface RingKey {
  kid: string;
  alg: SigningAlgorithm;
  state: KeyState;
  /** Imported once; never per request. Null when the private part is not held (never for keys we create). */
  signKey: CryptoKey | null;
  verifyKey: CryptoKey;
  /** HS256 keys only: the secret bytes, for the synchronous HMAC check on the redemption hot path (server/domain/jwt.ts). */
  /** HS256 only: the secret as a node:crypto KeyObject, made once (verifying with it skips preparing the key). */
  hmacSecret: KeyObject | null;
  /** Asymmetric keys only. */
  publicJwk: JWK | null;
}

export interface SigningKeyRecord {
  kid: string;
  algorithm: SigningAlgorithm;
  state: KeyState;
  createdAt: Date;
  retiredAt: Date | null;
}

export interface KeyRing {
  active(): RingKey;
  /** A key by kid, reloading the ring (at most once a second) when the kid is not known yet. */
  lookup(kid: string): Promise<RingKey | undefined>;
  /** Known keys, synchronously. */
  get(kid: string): RingKey | undefined;
  /**
   * Keys besides the default one that a JWT without a kid may be signed with: HS256 keys that only verify. An HS256
   * key we made only ever signed with its kid in the header; one added with `signing-keys add` (django-request-token's
   * SECRET_KEY) signed links that carry none.
   */
  kidless(): RingKey[];
  /** Re-reads the ring from the database (after a rotation in this or another process). */
  refresh(): Promise<void>;
  /** Public keys of asymmetric keys that still verify, as a JWK Set. */
  jwks(): { keys: JWK[] };
  /** A new active key (see rotateSigningKey), in use by this process at once. */
  rotate(algorithm?: string | null): Promise<SigningKeyRecord>;
  /** Retires a key (see retireSigningKey), refused by this process at once. */
  retire(kid: string): Promise<SigningKeyRecord>;
  close(): void;
}

/** Derives the 256-bit key-encryption key from the configured material. */
export function keyEncryptionKey(material: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(material, 'utf8'), Buffer.alloc(0), 'request-token signing keys', 32));
}

export function encryptKeyMaterial(kek: Buffer, kid: string, plain: Buffer): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, iv);
  cipher.setAAD(Buffer.from(kid, 'utf8'));
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return ['v1', iv, body, cipher.getAuthTag()].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
}

export function decryptKeyMaterial(kek: Buffer, kid: string, stored: string): Buffer {
  const [version, iv, body, tag] = stored.split('.');
  if (version !== 'v1' || !iv || !body || !tag) throw new Error(`signing key ${kid}: unknown storage format`);
  const decipher = createDecipheriv('aes-256-gcm', kek, Buffer.from(iv, 'base64url'));
  decipher.setAAD(Buffer.from(kid, 'utf8'));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  try {
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]);
  } catch {
    throw new Error(
      `signing key ${kid} cannot be decrypted: REQUEST_TOKEN_KEY_ENCRYPTION_KEY (or the secret it defaults to) changed`,
    );
  }
}

const importHmac = (bytes: Uint8Array<ArrayBuffer>) =>
  crypto.subtle.importKey('raw', bytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);

interface KeyRow {
  kid: string;
  algorithm: SigningAlgorithm;
  state: KeyState;
  encrypted_key: string | null;
  public_jwk: JWK | null;
}

async function importRow(row: KeyRow, secret: string, kek: Buffer): Promise<RingKey> {
  const base = { kid: row.kid, alg: row.algorithm, state: row.state };
  if (row.encrypted_key === null) {
    if (row.kid !== DEFAULT_KID || row.algorithm !== 'HS256') throw new Error(`signing key ${row.kid} has no key material`);
    const bytes = new TextEncoder().encode(secret);
    const key = await importHmac(bytes);
    return { ...base, signKey: key, verifyKey: key, hmacSecret: createSecretKey(bytes), publicJwk: null };
  }
  const plain = decryptKeyMaterial(kek, row.kid, row.encrypted_key);
  if (row.algorithm === 'HS256') {
    const key = await importHmac(new Uint8Array(plain));
    return { ...base, signKey: key, verifyKey: key, hmacSecret: createSecretKey(plain), publicJwk: null };
  }
  const signKey = await importPKCS8(plain.toString('utf8'), row.algorithm);
  const verifyKey = (await importJWK(row.public_jwk!, row.algorithm)) as CryptoKey;
  return { ...base, signKey, verifyKey, hmacSecret: null, publicJwk: row.public_jwk };
}

/** A ring holding only the default key: for code that has a secret and no database (benchmarks, unit use). */
export async function staticKeyRing(secret: string): Promise<KeyRing> {
  const key = await importRow(
    { kid: DEFAULT_KID, algorithm: 'HS256', state: 'active', encrypted_key: null, public_jwk: null },
    secret,
    Buffer.alloc(32),
  );
  return {
    active: () => key,
    get: (kid) => (kid === DEFAULT_KID ? key : undefined),
    kidless: () => [],
    lookup: async (kid) => (kid === DEFAULT_KID ? key : undefined),
    refresh: async () => {},
    jwks: () => ({ keys: [] }),
    rotate: () => Promise.reject(new Error('this key ring has no database')),
    retire: () => Promise.reject(new Error('this key ring has no database')),
    close: () => {},
  };
}

export interface KeyRingOptions {
  pool: pg.Pool;
  /** REQUEST_TOKEN_SECRET: the material of key "default". */
  secret: string;
  /** Material of the key-encryption key (REQUEST_TOKEN_KEY_ENCRYPTION_KEY, else the secret). */
  encryptionKey: string;
  /** Re-read the ring this often, so that rotations and retirements by the CLI reach a running server. */
  refreshMs?: number;
}

/** Loads every key once (imported as CryptoKey, cached by kid) and keeps the ring fresh. */
export async function loadKeyRing(options: KeyRingOptions): Promise<KeyRing> {
  const kek = keyEncryptionKey(options.encryptionKey);
  let keys = new Map<string, RingKey>();
  let kidless: RingKey[] = [];
  let active: RingKey | null = null;
  let lastRefresh = 0;
  let refreshing: Promise<void> | null = null;

  const load = async () => {
    const { rows } = await options.pool.query<KeyRow>(
      'select kid, algorithm, state, encrypted_key, public_jwk from signing_key order by created_at',
    );
    const next = new Map<string, RingKey>();
    for (const row of rows) {
      const known = keys.get(row.kid);
      // Key material never changes for a kid: reuse the imported CryptoKeys, take the new state.
      next.set(row.kid, known ? { ...known, state: row.state } : await importRow(row, options.secret, kek));
    }
    const nextActive = [...next.values()].find((k) => k.state === 'active');
    if (!nextActive) throw new Error('the signing-key ring has no active key');
    keys = next;
    kidless = [...next.values()].filter((k) => k.kid !== DEFAULT_KID && k.alg === 'HS256' && k.state === 'verify');
    active = nextActive;
    lastRefresh = Date.now();
  };
  const refresh = () => (refreshing ??= load().finally(() => (refreshing = null)));
  await refresh();

  const timer = setInterval(() => void refresh().catch(() => {}), options.refreshMs ?? 10_000);
  timer.unref();

  return {
    active: () => active!,
    get: (kid) => keys.get(kid),
    kidless: () => kidless,
    async lookup(kid) {
      const known = keys.get(kid);
      if (known || Date.now() - lastRefresh < 1_000) return known;
      await refresh().catch(() => {});
      return keys.get(kid);
    },
    refresh,
    jwks: () => ({
      keys: [...keys.values()]
        .filter((k) => k.publicJwk && k.state !== 'retired')
        .map((k) => ({ ...k.publicJwk!, kid: k.kid, alg: k.alg, use: 'sig' })),
    }),
    async rotate(algorithm) {
      const key = await rotateSigningKey(options.pool, options.encryptionKey, { algorithm });
      await refresh();
      return key;
    },
    async retire(kid) {
      const key = await retireSigningKey(options.pool, kid);
      await refresh();
      return key;
    },
    close: () => clearInterval(timer),
  };
}

const keyFromRow = (row: Record<string, any>): SigningKeyRecord => ({
  kid: row.kid,
  algorithm: row.algorithm,
  state: row.state,
  createdAt: row.created_at,
  retiredAt: row.retired_at,
});

export async function listSigningKeys(deps: { orm: MikroORM }): Promise<SigningKeyRecord[]> {
  const keys = await deps.orm.em.fork().find(SigningKey, {}, { orderBy: { createdAt: 'asc', kid: 'asc' } });
  return keys.map((key) => ({
    kid: key.kid,
    algorithm: key.algorithm,
    state: key.state,
    createdAt: key.createdAt,
    retiredAt: key.retiredAt ?? null,
  }));
}

function newKid(): string {
  const day = new Date().toISOString().slice(0, 10).replaceAll('-', '');
  return `k${day}-${randomBytes(6).toString('base64url')}`;
}

/**
 * Makes a new key the active one; the previous active key keeps verifying. Only the encrypted material is stored.
 */
export async function rotateSigningKey(
  pool: pg.Pool,
  encryptionKey: string,
  input: { algorithm?: string | null } = {},
): Promise<SigningKeyRecord> {
  const algorithm = (input.algorithm ?? 'HS256') as SigningAlgorithm;
  const issues = new Issues();
  if (!SIGNING_ALGORITHMS.includes(algorithm)) issues.add(['input', 'algorithm'], `must be one of ${SIGNING_ALGORITHMS.join(', ')}`);
  issues.throwIfAny();

  const kid = newKid();
  const kek = keyEncryptionKey(encryptionKey);
  let plain: Buffer;
  let publicJwk: JWK | null = null;
  if (algorithm === 'HS256') {
    plain = randomBytes(32);
  } else {
    const pair = await generateKeyPair(algorithm, { extractable: true });
    plain = Buffer.from(await exportPKCS8(pair.privateKey), 'utf8');
    const { kty, crv, x, y } = await exportJWK(pair.publicKey);
    publicJwk = Object.fromEntries(Object.entries({ kty, crv, x, y }).filter(([, v]) => v !== undefined)) as JWK;
  }
  try {
    return await inTransaction(pool, async (client) => {
      await client.query(`update signing_key set state = 'verify' where state = 'active'`);
      const { rows } = await client.query(
        `insert into signing_key (kid, algorithm, state, encrypted_key, public_jwk) values ($1, $2, 'active', $3, $4)
         returning kid, algorithm, state, created_at, retired_at`,
        [kid, algorithm, encryptKeyMaterial(kek, kid, plain), publicJwk],
      );
      return keyFromRow(rows[0]);
    });
  } finally {
    plain.fill(0);
  }
}

/**
 * Adds an existing HS256 secret to the ring as a key that only verifies, e.g. django-request-token's SECRET_KEY: links
 * it signed (no kid in their header) keep redeeming while the service signs new ones with its own key. Stored
 * encrypted like every other key; retire it once its links have expired.
 */
export async function addVerifyingKey(
  pool: pg.Pool,
  encryptionKey: string,
  input: { kid: string; algorithm?: string | null; secret: Buffer },
): Promise<SigningKeyRecord> {
  const algorithm = input.algorithm ?? 'HS256';
  const issues = new Issues();
  if (!KID_PATTERN.test(input.kid)) issues.add(['kid'], 'must be 1–64 letters, digits, _ or -');
  else if (input.kid === DEFAULT_KID) issues.add(['kid'], `"${DEFAULT_KID}" is REQUEST_TOKEN_SECRET itself`);
  if (algorithm !== 'HS256') issues.add(['algorithm'], 'only HS256 secrets can be added (asymmetric keys come from rotate)');
  if (input.secret.length === 0) issues.add(['secret'], 'is empty');
  issues.throwIfAny();
  const { rows } = await pool.query(
    `insert into signing_key (kid, algorithm, state, encrypted_key) values ($1, 'HS256', 'verify', $2)
     on conflict (kid) do nothing returning kid, algorithm, state, created_at, retired_at`,
    [input.kid, encryptKeyMaterial(keyEncryptionKey(encryptionKey), input.kid, input.secret)],
  );
  if (!rows[0]) {
    issues.add(['kid'], 'is taken by a key of the ring');
    issues.throwIfAny();
  }
  return keyFromRow(rows[0]);
}

/** Stops a key from verifying: every token signed with it is refused from then on. The active key cannot retire. */
export async function retireSigningKey(pool: pg.Pool, kid: string): Promise<SigningKeyRecord> {
  if (!KID_PATTERN.test(kid)) throw new NotFoundError('Signing key');
  const { rows } = await pool.query(
    `update signing_key set state = 'retired', retired_at = least(retired_at, now()) -- not coalesce(): refused by Citus
     where kid = $1 and state <> 'active' returning kid, algorithm, state, created_at, retired_at`,
    [kid],
  );
  if (rows[0]) return keyFromRow(rows[0]);
  const exists = await pool.query('select 1 from signing_key where kid = $1', [kid]);
  if (exists.rowCount) {
    const issues = new Issues();
    issues.add(['kid'], 'is the active key: rotate first, then retire it');
    issues.throwIfAny();
  }
  throw new NotFoundError('Signing key');
}
