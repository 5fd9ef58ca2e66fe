import { CompactSign, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { createJwtCodec, type TokenClaims } from '../server/jwt.js';

const SECRET = 'codec-secret-codec-secret-codec-secret-0123';
const key = new TextEncoder().encode(SECRET);
const claims: TokenClaims = { jti: '123', sub: 'news', mod: 'r', max: 3, aud: 'ünïcode user', iat: 1_800_000_000, exp: 1_900_000_000, nbf: 1_800_000_100 };
const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const joseSign = (payload: object, header: Record<string, unknown> = { alg: 'HS256', typ: 'JWT' }, k = key) =>
  new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(header as any).sign(k);

describe('the JWT codec (node:crypto HMAC for our header, jose for anything else)', () => {
  it('signs byte for byte as jose does', async () => {
    const codec = await createJwtCodec(SECRET);
    for (const c of [claims, { jti: '1', sub: 's', mod: 'n', max: 1, iat: 1 } as TokenClaims]) {
      const expected = await new SignJWT({ ...c }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key);
      expect(await codec.sign(c)).toBe(expected);
    }
  });

  it('accepts what jose signs with the key, whatever the header order', async () => {
    const codec = await createJwtCodec(SECRET);
    expect(await codec.verify(await joseSign(claims))).toEqual({ ok: true, claims });
    expect(await codec.verify(await joseSign(claims, { typ: 'JWT', alg: 'HS256' }))).toEqual({ ok: true, claims });
  });

  it('refuses bad signatures, other algorithms and malformed tokens with the codes jose gives', async () => {
    const codec = await createJwtCodec(SECRET);
    const good = await codec.sign(claims);
    const [header, payload, signature] = good.split('.');
    const other = new TextEncoder().encode('another-secret-another-secret-another-0123');
    const cases: [string, string][] = [
      [await joseSign(claims, undefined, other), 'TOKEN_SIGNATURE_INVALID'],
      [`${header}.${b64({ ...claims, max: 99 })}.${signature}`, 'TOKEN_SIGNATURE_INVALID'],
      [`${header}.${payload}.${signature.slice(0, -4)}`, 'TOKEN_SIGNATURE_INVALID'],
      [`${header}.${payload}.`, 'TOKEN_SIGNATURE_INVALID'],
      [`${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`, 'TOKEN_SIGNATURE_INVALID'],
      [await joseSign(claims, { alg: 'HS512', typ: 'JWT' }), 'TOKEN_SIGNATURE_INVALID'],
      [`${b64('not json')}.${payload}.${signature}`, 'TOKEN_MALFORMED'],
      [await joseSign({ ...claims, mod: 'x' }), 'TOKEN_MALFORMED'],
      ['a.b', 'TOKEN_MALFORMED'],
      ['', 'TOKEN_MALFORMED'],
    ];
    for (const [jwt, code] of cases) expect(await codec.verify(jwt), jwt).toEqual({ ok: false, code });
    // A valid signature over a payload that is not JSON.
    const notJson = `${header}.${b64('{oops')}`;
    const signed = await new CompactSign(new TextEncoder().encode('{oops')).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key);
    expect(signed.startsWith(notJson)).toBe(true);
    expect(await codec.verify(signed)).toEqual({ ok: false, code: 'TOKEN_MALFORMED' });
  });
});
