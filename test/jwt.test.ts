import { SignJWT, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { createJwtCodec, type TokenClaims } from '../server/domain/jwt.js';
import { TEST_SECRET } from './support/harness.js';

const iat = Math.floor(Date.now() / 1000);
const claims: TokenClaims = { jti: '123', sub: 'abmelden/wöchentlich', mod: 'r', max: 1, aud: 'user-42', iat, exp: iat + 3600 };
const secret = new TextEncoder().encode(TEST_SECRET);

describe('HS256 signing by node:crypto', () => {
  it.each([
    ['without a kid (the default key, Django layout)', null, { alg: 'HS256', typ: 'JWT' }],
    ['with the default key’s kid', undefined, { alg: 'HS256', typ: 'JWT', kid: 'default' }],
  ] as const)('writes the JWS jose writes, byte for byte: %s', async (_what, kid, header) => {
    const codec = await createJwtCodec(TEST_SECRET);
    const ours = await codec.sign(claims, kid);
    expect(ours).toBe(await new SignJWT({ ...claims }).setProtectedHeader(header).sign(secret));
    const { payload, protectedHeader } = await jwtVerify(ours, secret);
    expect(payload).toEqual(claims);
    expect(protectedHeader).toEqual(header);
    expect(await codec.verify(ours)).toMatchObject({ ok: true, claims });
  });
});
