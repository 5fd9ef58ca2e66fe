import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { REDEEM } from '../support/operations.js';
import { startTestServer, TEST_SECRET, type TestServer } from '../support/harness.js';
import { rawRequest } from '../support/raw-http.js';
import { b64, hs256, withoutConsumption } from './support.js';

let server: TestServer;
let token: { id: string; jwt: string };
let claims: Record<string, unknown>;
let edKid: string;
let edPublicX: string;

const header = { alg: 'HS256', typ: 'JWT', kid: 'default' };

async function issue(input: Record<string, unknown>) {
  const res = await server.gql(
    'mutation C($input: CreateRequestTokenInput!) { createRequestToken(input: $input) { ... on CreateRequestTokenSuccess { jwt token { id } } } }',
    { input },
  );
  return { id: res.data.createRequestToken.token.id as string, jwt: res.data.createRequestToken.jwt as string };
}

/** Redeems and returns the refusal's code; asserts that nothing was consumed and no success logged. */
async function refusal(jwt: string, scope = 's') {
  const res = await withoutConsumption(server, () => server.gql(REDEEM, { input: { jwt, scope } }));
  const result = res.data?.redeemRequestToken;
  expect(result, JSON.stringify(res)).toBeTruthy();
  return result.__typename === 'TokenRejectedError' ? result.code : `${result.__typename}`;
}

beforeAll(async () => {
  server = await startTestServer({ CLOCK_TOLERANCE_SECONDS: '30' });
  token = await issue({ scope: 's', maxUses: 50 });
  claims = decodeJwt(token.jwt);
  // An EdDSA key verifying (not active), so that algorithm-confusion attacks have a public key to abuse.
  const rotated = await server.gql('mutation { rotateSigningKey(input: { algorithm: EdDSA }) { ... on RotateSigningKeySuccess { key { kid } } } }');
  edKid = rotated.data.rotateSigningKey.key.kid;
  await server.gql('mutation { rotateSigningKey(input: { algorithm: HS256 }) { __typename } }');
  const jwks = await (await fetch(`${server.url}/.well-known/jwks.json`)).json();
  edPublicX = jwks.keys.find((k: any) => k.kid === edKid).x;
});
afterAll(() => server?.close());

describe('JWT attacks are refused, consume nothing and log no success', () => {
  it('redeems the genuine token (control: the attacks below target a token with uses left)', async () => {
    const res = await server.gql(REDEEM, { input: { jwt: token.jwt, scope: 's' } });
    expect(res.data.redeemRequestToken.__typename).toBe('Redemption');
  });

  it.each(['none', 'None', 'NONE', 'nOnE'])('refuses alg "%s" with no signature', async (alg) => {
    expect(await refusal(`${b64({ ...header, alg })}.${b64(claims)}.`)).toBe('TOKEN_SIGNATURE_INVALID');
  });

  it('refuses alg "none" without a kid (the default key)', async () => {
    expect(await refusal(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`)).toBe('TOKEN_SIGNATURE_INVALID');
  });

  it('refuses HS256 signed with an EdDSA key’s public key (algorithm confusion)', async () => {
    for (const secret of [edPublicX, Buffer.from(edPublicX, 'base64url')]) {
      expect(await refusal(hs256(secret, { alg: 'HS256', typ: 'JWT', kid: edKid }, claims))).toBe('TOKEN_SIGNATURE_INVALID');
    }
  });

  it('refuses another algorithm than the key’s (HS384 with the right secret)', async () => {
    const input = `${b64({ ...header, alg: 'HS384' })}.${b64(claims)}`;
    const jwt = `${input}.${createHmac('sha384', TEST_SECRET).update(input).digest('base64url')}`;
    expect(await refusal(jwt)).toBe('TOKEN_SIGNATURE_INVALID');
  });

  it.each([
    ['unknown', 'no-such-key'],
    ['path-like', '../../../../etc/passwd'],
    ['SQL-like', "default' or '1'='1"],
    ['huge', 'k'.repeat(1500)],
    ['empty', ''],
  ])('refuses a %s kid', async (_name, kid) => {
    expect(await refusal(hs256(TEST_SECRET, { ...header, kid }, claims))).toBe('TOKEN_SIGNATURE_INVALID');
  });

  it('refuses a kid that is not a string', async () => {
    expect(await refusal(hs256(TEST_SECRET, { ...header, kid: 1 }, claims))).toBe('TOKEN_MALFORMED');
  });

  it.each([
    ['jwk', { jwk: { kty: 'oct', k: b64('attacker-secret-attacker-secret-0123') } }],
    ['jku', { jku: 'https://evil.example/jwks.json' }],
    ['x5u', { x5u: 'https://evil.example/cert.pem' }],
    ['x5c', { x5c: ['MIIB'] }],
    ['unknown crit', { crit: ['exp'], exp: 1 }],
    ['b64=false', { b64: false, crit: ['b64'] }],
  ])('refuses a %s header, even when the signature matches', async (_name, extra) => {
    // Signed with our own secret: only the header parameter is wrong.
    expect(await refusal(hs256(TEST_SECRET, { ...header, ...extra }, claims))).toBe('TOKEN_MALFORMED');
  });

  it('refuses a key embedded in the header and the token signed with it', async () => {
    const k = 'attacker-secret-attacker-secret-0123';
    expect(await refusal(hs256(k, { ...header, jwk: { kty: 'oct', k: b64(k) } }, claims))).toBe('TOKEN_MALFORMED');
  });

  it.each([
    ['a JWE (5 segments)', () => `${b64({ alg: 'dir', enc: 'A256GCM' })}..${b64('iv')}.${b64('ciphertext')}.${b64('tag')}`],
    ['2 segments', () => token.jwt.split('.').slice(0, 2).join('.')],
    ['4 segments', () => `${token.jwt}.${b64('x')}`],
    ['bad base64 characters', () => token.jwt.replace('.', '+/=.')],
    ['a header that is not JSON', () => `${b64('not json')}.${token.jwt.split('.').slice(1).join('.')}`],
    ['a header that is a JSON array', () => `${b64([1])}.${token.jwt.split('.').slice(1).join('.')}`],
    ['a payload that is not JSON (correctly signed)', () => hs256(TEST_SECRET, header, 'not json')],
    ['a typ other than JWT', () => hs256(TEST_SECRET, { ...header, typ: 'JWE' }, claims)],
    ['an empty string', () => ''],
  ])('refuses %s', async (_name, make) => {
    const jwt = make();
    // An empty string never reaches the JWT check: input validation refuses it first.
    expect(await refusal(jwt)).toBe(jwt === '' ? 'ValidationError' : 'TOKEN_MALFORMED');
  });

  it('refuses a payload with one bit flipped', async () => {
    const [h, p, s] = token.jwt.split('.');
    const bytes = Buffer.from(p, 'base64url');
    bytes[bytes.length - 2] ^= 0x01;
    expect(await refusal(`${h}.${bytes.toString('base64url')}.${s}`)).toBe('TOKEN_SIGNATURE_INVALID');
  });

  it('refuses an empty signature and a signature made with another secret', async () => {
    const [h, p] = token.jwt.split('.');
    expect(await refusal(`${h}.${p}.`)).toBe('TOKEN_SIGNATURE_INVALID');
    expect(await refusal(hs256('another-secret-another-secret-0123456', header, claims))).toBe('TOKEN_SIGNATURE_INVALID');
  });

  it.each([
    ['jti missing', { jti: undefined }],
    ['sub missing', { sub: undefined }],
    ['mod missing', { mod: undefined }],
    ['max missing', { max: undefined }],
    ['iat missing', { iat: undefined }],
    // A whole-number jti is django-request-token's (accepted, see test/django-differences.test.ts); no other number is.
    ['jti a fraction', { jti: 1.5 }],
    ['jti beyond the safe integers', { jti: 2 ** 53 }],
    ['max a string', { max: '5' }],
    ['mod unknown', { mod: 'x' }],
    ['exp a string', { exp: 'tomorrow' }],
    ['aud a list', { aud: ['a', 'b'] }],
  ])('refuses correctly signed claims with %s', async (_name, change) => {
    expect(await refusal(hs256(TEST_SECRET, header, { ...claims, ...change }))).toBe('TOKEN_MALFORMED');
  });

  it('refuses a jti that is not a token id as an unknown token', async () => {
    expect(await refusal(hs256(TEST_SECRET, header, { ...claims, jti: "1 or 1=1; drop table request_token" }))).toBe(
      'TOKEN_NOT_FOUND',
    );
  });

  it('refuses a token longer than the JWT cap before decoding it', async () => {
    const long = hs256(TEST_SECRET, header, { ...claims, pad: 'x'.repeat(4000) });
    expect(await refusal(long)).toBe('TOKEN_MALFORMED');
  });

  it('refuses a 1 MB token without reading it (413), consuming nothing', async () => {
    const jwt = `${'a'.repeat(1024 * 1024)}.b.c`;
    const res = await withoutConsumption(server, () =>
      rawRequest(server.graphqlUrl, {
        headers: { 'content-type': 'application/json', authorization: `Bearer ${server.apiKey}` },
        body: JSON.stringify({ query: REDEEM, variables: { input: { jwt, scope: 's' } } }),
      }),
    );
    expect(res.status).toBe(413);
    expect(JSON.parse(res.text).errors[0].extensions.code).toBe('PAYLOAD_TOO_LARGE');
  });
});

describe('time windows honour the configured clock tolerance (30 s)', () => {
  async function windowed(set: string) {
    const t = await issue({ scope: 's', maxUses: 3 });
    await server.sql(`update request_token set ${set} where id = $1`, [t.id]);
    return t;
  }

  it('redeems a token expired 10 s ago, inside the tolerance', async () => {
    const t = await windowed(`expires_at = now() - interval '10 seconds'`);
    expect((await server.gql(REDEEM, { input: { jwt: t.jwt, scope: 's' } })).data.redeemRequestToken.__typename).toBe('Redemption');
  });

  it('refuses a token expired 60 s ago, beyond the tolerance', async () => {
    const t = await windowed(`expires_at = now() - interval '60 seconds'`);
    expect(await refusal(t.jwt)).toBe('TOKEN_EXPIRED');
  });

  it('redeems a token valid 10 s from now, inside the tolerance', async () => {
    const t = await windowed(`not_before = now() + interval '10 seconds'`);
    expect((await server.gql(REDEEM, { input: { jwt: t.jwt, scope: 's' } })).data.redeemRequestToken.__typename).toBe('Redemption');
  });

  it('refuses a token valid only 60 s from now', async () => {
    const t = await windowed(`not_before = now() + interval '60 seconds'`);
    expect(await refusal(t.jwt)).toBe('TOKEN_NOT_YET_VALID');
  });

  it('takes the window from the database, not from exp/nbf claims an attacker could forge', async () => {
    // The forger holds the token's own key (the default key; a JWT of another key is refused whatever it claims).
    const t = await windowed(`expires_at = now() - interval '1 hour', kid = 'default'`);
    const forged = hs256(TEST_SECRET, header, { ...decodeJwt(t.jwt), exp: Math.floor(Date.now() / 1000) + 3600 });
    expect(await refusal(forged)).toBe('TOKEN_EXPIRED');
  });
});
