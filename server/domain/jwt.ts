import { createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';
import { SignJWT, compactVerify, errors as joseErrors } from 'jose';
import type { LoginMode } from '../database/entities/request-token.js';
import { DEFAULT_KID, KID_PATTERN, staticKeyRing, type KeyRing, type RingKey } from './signing-keys.js';

/** The algorithm of the default key (REQUEST_TOKEN_SECRET). */
export const JWT_ALGORITHM = 'HS256';
/** Longer input is refused before any decoding. */
export const MAX_JWT_LENGTH = 4096;

/** The claims of a request token, laid out as django-request-token lays them out. */
export interface TokenClaims {
  /** Token id. */
  jti: string;
  /** Scope. */
  sub: string;
  /** First letter of the login mode, lower-case. */
  mod: 'n' | 'r' | 's';
  /** Max uses. */
  max: number;
  /** The token's user, when set. */
  aud?: string;
  iat: number;
  exp?: number;
  nbf?: number;
}

export type VerifyResult =
  | { ok: true; claims: TokenClaims; kid: string }
  | { ok: false; code: 'TOKEN_MALFORMED' | 'TOKEN_SIGNATURE_INVALID' };

export interface JwtCodec {
  /**
   * Signs with the active key, or with key `kid` (a stored token's own key), which must still be usable: else it
   * rejects with SigningKeyRetiredError, never signing with another key. `kid` null: a token from before the key ring,
   * signed with the default key and no kid header, exactly as it was first issued.
   */
  sign(claims: TokenClaims, kid?: string | null): Promise<string>;
  /**
   * Checks shape and signature only; time, scope and use checks belong to redemption, against the database. A known
   * HMAC key answers at once; an asymmetric key or an unknown kid (the ring may reload) answers with a promise.
   */
  verify(jwt: string): VerifyResult | Promise<VerifyResult>;
  /** The kid new tokens are signed with. */
  activeKid(): string;
  ring: KeyRing;
}

const MODES: Record<LoginMode, TokenClaims['mod']> = { NONE: 'n', REQUEST: 'r', SESSION: 's' };
export const modeClaim = (mode: LoginMode) => MODES[mode];

const JWS_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
/** The only header parameters we write, so the only ones we accept: no jwk, jku, x5u, x5c, crit, b64… */
const HEADER_PARAMS = new Set(['alg', 'typ', 'kid']);

interface Header {
  alg: string;
  kid: string | undefined;
}

/** Parses and screens a JWS header; a string says what is wrong with it. */
function parseHeader(segment: string): Header | 'TOKEN_MALFORMED' | 'TOKEN_SIGNATURE_INVALID' {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    return 'TOKEN_MALFORMED';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'TOKEN_MALFORMED';
  const h = value as Record<string, unknown>;
  for (const name of Object.keys(h)) if (!HEADER_PARAMS.has(name)) return 'TOKEN_MALFORMED';
  if (typeof h.alg !== 'string') return 'TOKEN_MALFORMED';
  if (h.typ !== undefined && h.typ !== 'JWT') return 'TOKEN_MALFORMED';
  if (h.kid !== undefined && typeof h.kid !== 'string') return 'TOKEN_MALFORMED';
  // A kid that no key of ours can have is an unknown key: no lookup, no reload.
  if (typeof h.kid === 'string' && !KID_PATTERN.test(h.kid)) return 'TOKEN_SIGNATURE_INVALID';
  return { alg: h.alg, kid: h.kid };
}

/**
 * A stored token's JWT cannot be signed again: its key was retired (or is not held). Its links are refused, and no
 * other key may sign in its place, or retiring a compromised key would not kill the tokens it signed.
 */
export class SigningKeyRetiredError extends Error {
  constructor(readonly kid: string) {
    super(`signing key "${kid}" is retired`);
    this.name = 'SigningKeyRetiredError';
  }
}

function signWith(key: RingKey | undefined, kid: string, claims: TokenClaims, legacy: boolean): Promise<string> {
  if (!key || key.state === 'retired' || !key.signKey) return Promise.reject(new SigningKeyRetiredError(kid));
  const header = legacy && key.kid === DEFAULT_KID ? { alg: key.alg, typ: 'JWT' } : { alg: key.alg, typ: 'JWT', kid: key.kid };
  // HS256 by node:crypto, synchronously (the same JWS jose writes, byte for byte): jose's Web Crypto HMAC was a
  // quarter of an issue's CPU time. Asymmetric keys sign through jose.
  if (key.hmacSecret) return Promise.resolve(signHs256(header, claims, key.hmacSecret));
  return new SignJWT({ ...claims }).setProtectedHeader(header).sign(key.signKey);
}

/**
 * Signs and verifies with the key ring. Keys are CryptoKeys imported once per kid (twice as fast as raw bytes, which
 * jose imports per call). A plain secret gives a ring of the default HS256 key alone.
 */
export async function createJwtCodec(source: string | KeyRing): Promise<JwtCodec> {
  const ring = typeof source === 'string' ? await staticKeyRing(source) : source;
  // Headers repeat (one per key), so screened ones are remembered; the cache holds only accepted headers.
  const headers = new Map<string, Header>();

  return {
    ring,
    activeKid: () => ring.active().kid,
    sign(claims, kid) {
      if (kid === undefined) {
        const active = ring.active();
        return signWith(active, active.kid, claims, false);
      }
      const wanted = kid ?? DEFAULT_KID;
      const known = ring.get(wanted);
      // A key made by another process since this one loaded the ring: reload (throttled) before giving up.
      return known
        ? signWith(known, wanted, claims, kid === null)
        : ring.lookup(wanted).then((key) => signWith(key, wanted, claims, kid === null));
    },
    verify(jwt) {
      if (jwt.length > MAX_JWT_LENGTH || !JWS_SHAPE.test(jwt)) return { ok: false, code: 'TOKEN_MALFORMED' };
      const segment = jwt.slice(0, jwt.indexOf('.'));
      let header = headers.get(segment);
      if (!header) {
        const parsed = parseHeader(segment);
        if (typeof parsed === 'string') return { ok: false, code: parsed };
        header = parsed;
        if (headers.size < 256) headers.set(segment, header);
      }
      // The key comes from our ring only; tokens without a kid are the default key's (issued before rotation).
      const kid = header.kid ?? DEFAULT_KID;
      // A known key answers synchronously (no promise, no turn of the microtask queue on the hot path); an unknown kid
      // may reload the ring (throttled).
      const found = ring.get(kid);
      const known = header;
      return found ? verifyWith(jwt, known, kid, found) : ring.lookup(kid).then((key) => verifyWith(jwt, known, kid, key));
    },
  };

  function verifyWith(jwt: string, header: Header, kid: string, found: RingKey | undefined): VerifyResult | Promise<VerifyResult> {
    const key = found && found.state !== 'retired' && header.alg === found.alg ? found : null;
    if (key && !key.hmacSecret) {
      return compactVerify(jwt, key.verifyKey, { algorithms: [key.alg] }).then(
        ({ payload }) => verified(payload, kid),
        (error) => {
          if (error instanceof joseErrors.JWSInvalid) return { ok: false, code: 'TOKEN_MALFORMED' } as const;
          if (error instanceof joseErrors.JOSEError) return { ok: false, code: 'TOKEN_SIGNATURE_INVALID' } as const;
          throw error;
        },
      );
    }
    let payload = key ? verifyHs256(jwt, key.hmacSecret!) : null;
    let kidUsed = kid;
    // No kid and not the default key's: perhaps a verify-only secret added to the ring (django-request-token's
    // SECRET_KEY). Tried only after a failure, so the default key's tokens cost nothing more.
    if (!payload && header.kid === undefined && header.alg === 'HS256') {
      for (const other of ring.kidless()) {
        payload = verifyHs256(jwt, other.hmacSecret!);
        if (payload) {
          kidUsed = other.kid;
          break;
        }
      }
    }
    return verified(payload, kidUsed);
  }
}

/** The claims of a verified payload (null: the signature did not verify). */
function verified(payload: Uint8Array | null, kid: string): VerifyResult {
  if (!payload) return { ok: false, code: 'TOKEN_SIGNATURE_INVALID' };
  const claims = parseClaims(payload);
  return claims ? { ok: true, claims, kid } : { ok: false, code: 'TOKEN_MALFORMED' };
}

/**
 * HS256 by node:crypto, synchronously: the redemption hot path's one cryptographic step, about five times cheaper than
 * jose's WebCrypto round trip (shared/perf-notes.md). Only for a JWS whose header was screened above (alg HS256, our
 * key); everything else goes through jose. The signature must be the canonical base64url of the HMAC, compared in
 * constant time. Returns the payload bytes, or null for a bad signature.
 */
function verifyHs256(jwt: string, secret: KeyObject): Buffer | null {
  const firstDot = jwt.indexOf('.');
  const lastDot = jwt.lastIndexOf('.');
  const expected = createHmac('sha256', secret).update(jwt.slice(0, lastDot)).digest();
  const signature = jwt.slice(lastDot + 1);
  const given = Buffer.from(signature, 'base64url');
  if (given.length !== expected.length || given.toString('base64url') !== signature) return null;
  if (!timingSafeEqual(given, expected)) return null;
  return Buffer.from(jwt.slice(firstDot + 1, lastDot), 'base64url');
}

/** A compact JWS over the JSON of `header` and `claims`, signed with HMAC-SHA-256. */
export function signHs256(header: object, claims: object, secret: KeyObject): string {
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

const utf8 = new TextDecoder();

function parseClaims(payload: Uint8Array): TokenClaims | null {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(payload));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const c = value as Record<string, unknown>;
  const optionalNumber = (v: unknown) => v === undefined || (typeof v === 'number' && Number.isFinite(v));
  if (typeof c.sub !== 'string') return null;
  // django-request-token up to 2.3.x writes the token id as a JSON number, and its 1.x writes the user id (`aud`) as
  // one: such links are still in people's mailboxes. A safe integer is read as its decimal string; nothing else is.
  if (typeof c.jti !== 'string') {
    if (!isSafeId(c.jti)) return null;
    c.jti = String(c.jti);
  }
  if (c.aud !== undefined && typeof c.aud !== 'string') {
    if (!isSafeId(c.aud)) return null;
    c.aud = String(c.aud);
  }
  if (c.mod !== 'n' && c.mod !== 'r' && c.mod !== 's') return null;
  if (typeof c.max !== 'number' || typeof c.iat !== 'number') return null;
  if (!optionalNumber(c.exp) || !optionalNumber(c.nbf)) return null;
  return c as unknown as TokenClaims;
}

const isSafeId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
