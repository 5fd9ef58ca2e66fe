import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalJWKSet, decodeProtectedHeader, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { CREATE, REDEEM } from '../support/operations.js';
import { startTestServer, TEST_SECRET, type TestServer } from '../support/harness.js';
import { decryptKeyMaterial, keyEncryptionKey } from '../../server/domain/signing-keys.js';
import { hs256, withoutConsumption } from './support.js';

const KEK = 'key-encryption-key-key-encryption-key-0123';
let server: TestServer;

async function issue(scope = 's') {
  const res = await server.gql(CREATE, { input: { scope, maxUses: 10 } });
  return res.data.createRequestToken as { jwt: string; token: { id: string; jwt: string } };
}
const redeem = async (jwt: string) => (await server.gql(REDEEM, { input: { jwt, scope: 's' } })).data.redeemRequestToken;
const rotate = async (algorithm: string) => {
  const res = await server.gql(
    'mutation R($a: SigningAlgorithm) { rotateSigningKey(input: { algorithm: $a }) { ... on RotateSigningKeySuccess { key { kid algorithm state } } } }',
    { a: algorithm },
  );
  return res.data.rotateSigningKey.key as { kid: string; algorithm: string; state: string };
};
const retire = (kid: string) =>
  server.gql(
    'mutation R($kid: String!) { retireSigningKey(kid: $kid) { __typename ... on Error { code } ... on RetireSigningKeySuccess { key { state } } } }',
    { kid },
  );
const jwks = async () => (await (await fetch(`${server.url}/.well-known/jwks.json`)).json()) as { keys: any[] };

beforeAll(async () => {
  server = await startTestServer({ REQUEST_TOKEN_KEY_ENCRYPTION_KEY: KEK });
});
afterAll(() => server?.close());

describe('signing-key ring', () => {
  it('signs with the default key (REQUEST_TOKEN_SECRET, HS256) and names it in the header', async () => {
    const { jwt } = await issue();
    expect(decodeProtectedHeader(jwt)).toEqual({ alg: 'HS256', typ: 'JWT', kid: 'default' });
    const [h, p, s] = jwt.split('.');
    expect(createHmac('sha256', TEST_SECRET).update(`${h}.${p}`).digest('base64url')).toBe(s);
  });

  it('verifies tokens issued before the ring existed (no kid) with the default key', async () => {
    const { jwt, token } = await issue();
    await server.sql('update request_token set kid = null where id = $1', [token.id]);
    const legacy = hs256(TEST_SECRET, { alg: 'HS256', typ: 'JWT' }, JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()));
    expect((await redeem(legacy)).__typename).toBe('Redemption');
    // Its JWT is re-signed exactly as it was first issued: no kid.
    const read = await server.gql('query T($id: ID!) { requestToken(id: $id) { jwt } }', { id: token.id });
    expect(read.data.requestToken.jwt).toBe(legacy);
  });

  it('rotates: new tokens carry the new kid, links already sent keep working', async () => {
    const before = await issue();
    const key = await rotate('HS256');
    expect(key).toMatchObject({ algorithm: 'HS256', state: 'ACTIVE' });
    const after = await issue();
    expect(decodeProtectedHeader(after.jwt).kid).toBe(key.kid);
    expect((await redeem(before.jwt)).__typename).toBe('Redemption');
    expect((await redeem(after.jwt)).__typename).toBe('Redemption');
    // A stored token's JWT is signed again with its own key.
    const read = await server.gql('query T($id: ID!) { requestToken(id: $id) { jwt } }', { id: before.token.id });
    expect(read.data.requestToken.jwt).toBe(before.jwt);
    const keys = await server.gql('{ signingKeys { kid state } }');
    expect(keys.data.signingKeys).toContainEqual({ kid: 'default', state: 'VERIFY' });
  });

  it('refuses tokens of a retired key, consuming nothing, and refuses to retire the active key', async () => {
    const old = await issue();
    const oldKid = decodeProtectedHeader(old.jwt).kid!;
    const active = await rotate('HS256');
    expect((await retire(active.kid)).data.retireSigningKey).toMatchObject({ __typename: 'ValidationError' });
    expect((await retire(oldKid)).data.retireSigningKey).toEqual({ __typename: 'RetireSigningKeySuccess', key: { state: 'RETIRED' } });
    const refused = await withoutConsumption(server, () => redeem(old.jwt));
    expect(refused).toMatchObject({ __typename: 'TokenRejectedError', code: 'TOKEN_SIGNATURE_INVALID' });
    expect((await retire('no-such-kid')).data.retireSigningKey).toMatchObject({ code: 'NOT_FOUND' });
  });

  it.each(['EdDSA', 'ES256'])('serves %s public keys at /.well-known/jwks.json for offline verification', async (alg) => {
    const key = await rotate(alg);
    const { jwt } = await issue();
    expect(decodeProtectedHeader(jwt)).toEqual({ alg, typ: 'JWT', kid: key.kid });
    const set = await jwks();
    const published = set.keys.find((k) => k.kid === key.kid);
    expect(published).toMatchObject({ kid: key.kid, alg, use: 'sig' });
    expect(published).not.toHaveProperty('d');
    const { payload } = await jwtVerify(jwt, createLocalJWKSet(set as never), { algorithms: [alg] });
    expect(payload.sub).toBe('s');
    expect((await redeem(jwt)).__typename).toBe('Redemption');
    // A token forged with a key of the same kind but not ours fails.
    const stranger = await generateKeyPair(alg);
    const forged = await new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT', kid: key.kid }).sign(stranger.privateKey);
    expect(await withoutConsumption(server, () => redeem(forged))).toMatchObject({ code: 'TOKEN_SIGNATURE_INVALID' });
  });

  it('drops retired keys from the JWKS and never publishes symmetric keys', async () => {
    const ed = await rotate('EdDSA');
    await rotate('HS256');
    expect((await jwks()).keys.map((k) => k.kid)).toContain(ed.kid);
    await retire(ed.kid);
    const set = await jwks();
    expect(set.keys.map((k) => k.kid)).not.toContain(ed.kid);
    expect(set.keys.every((k) => k.kty !== 'oct')).toBe(true);
  });

  it('stores key material only encrypted with the key from the environment', async () => {
    const key = await rotate('HS256');
    const { jwt } = await issue();
    const [row] = await server.sql('select encrypted_key from signing_key where kid = $1', [key.kid]);
    const secret = decryptKeyMaterial(keyEncryptionKey(KEK), key.kid, row.encrypted_key);
    const [h, p, s] = jwt.split('.');
    expect(createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url')).toBe(s);
    expect(row.encrypted_key).not.toContain(secret.toString('base64url'));
    expect(row.encrypted_key).not.toContain(secret.toString('base64'));
    expect(row.encrypted_key).not.toContain(secret.toString('hex'));
    expect(() => decryptKeyMaterial(keyEncryptionKey('another-key-another-key-another-key-0'), key.kid, row.encrypted_key)).toThrow(
      /cannot be decrypted/,
    );
    const [def] = await server.sql(`select encrypted_key from signing_key where kid = 'default'`);
    expect(def.encrypted_key).toBeNull();
  });
});
