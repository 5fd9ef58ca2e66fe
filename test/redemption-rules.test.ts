import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDEEM_BATCH_SQL } from '../server/domain/redeem-batch.js';
import { REDEMPTION_CHECKS } from '../server/domain/redemption-rules.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { issue, REDEEM } from './support/operations.js';
import { tenantKey } from './security/support.js';

// Each check of the redemption rules, at its boundary: a token just inside and one just outside. Its `status`, what
// inspection says, a redemption through each statement that can count a use (REDEEM_ALONE_SQL: a batch of one on a
// batch connection; REDEEM_SQL: a lone click, or with an idempotency key; REDEEM_BATCH_SQL: the micro-batch), all must agree. The clock
// tolerance is 30 s, so the time checks are probed 5 s either side of now ± 30 s.
const TOLERANCE = 30;

let server: TestServer;
let ownKey: string;
let otherKey: string;
let ownClient: string;
let otherClient: string;
beforeAll(async () => {
  server = await startTestServer({ CLOCK_TOLERANCE_SECONDS: String(TOLERANCE) });
  const own = await tenantKey(server, 'rules owner', ['issue', 'redeem', 'read']);
  const other = await tenantKey(server, 'rules other', ['issue', 'redeem', 'read']);
  ownKey = own.key;
  otherKey = other.key;
  ownClient = own.client.id;
  otherClient = other.client.id;
});
afterAll(() => server?.close());

const TARGET = 'https://app.example/unsubscribe?list=weekly';

interface Side {
  /** SQL run on the token (`$1` is its id) after issuing it, right before it is probed. */
  sql?: string;
  /** The redemption's own inputs (scope, url, userId). */
  redeem?: Record<string, unknown>;
  /** The caller's API key (default: the token's own client). */
  key?: () => string;
}

interface Case {
  code: string;
  /** The token's status outside the boundary (checks that depend on the request have none: ACTIVE). */
  status: string;
  issue?: Record<string, unknown>;
  inside: Side;
  outside: Side;
}

const CASES: Case[] = [
  {
    code: 'TOKEN_NOT_FOUND',
    status: 'ACTIVE',
    inside: {},
    outside: { key: () => otherKey },
  },
  {
    // The JWT verifies, but with another key than the one the token was issued with (stands for a retired key).
    code: 'TOKEN_SIGNATURE_INVALID',
    status: 'ACTIVE',
    inside: {},
    outside: { sql: `update request_token set kid = 'another-key' where id = $1` },
  },
  {
    code: 'TOKEN_REVOKED',
    status: 'REVOKED',
    inside: {},
    outside: { sql: 'update request_token set revoked_at = now() where id = $1' },
  },
  {
    code: 'TOKEN_NOT_YET_VALID',
    status: 'NOT_YET_VALID',
    inside: { sql: `update request_token set not_before = now() + interval '${TOLERANCE - 5} seconds' where id = $1` },
    outside: { sql: `update request_token set not_before = now() + interval '${TOLERANCE + 5} seconds' where id = $1` },
  },
  {
    code: 'TOKEN_EXPIRED',
    status: 'EXPIRED',
    inside: { sql: `update request_token set expires_at = now() - interval '${TOLERANCE - 5} seconds' where id = $1` },
    outside: { sql: `update request_token set expires_at = now() - interval '${TOLERANCE + 5} seconds' where id = $1` },
  },
  {
    code: 'SCOPE_MISMATCH',
    status: 'ACTIVE',
    inside: { redeem: { scope: 'rules' } },
    outside: { redeem: { scope: 'rules-other' } },
  },
  {
    code: 'TARGET_URL_MISMATCH',
    status: 'ACTIVE',
    issue: { targetUrl: TARGET },
    inside: { redeem: { url: `${TARGET}&utm_source=mail` } },
    outside: { redeem: { url: 'https://app.example/unsubscribe?list=daily' } },
  },
  {
    code: 'AUDIENCE_MISMATCH',
    status: 'ACTIVE',
    issue: { userId: 'alice' },
    inside: { redeem: { userId: 'alice' } },
    outside: { redeem: { userId: 'bob' } },
  },
  {
    code: 'MAX_USES_EXCEEDED',
    status: 'EXHAUSTED',
    issue: { maxUses: 2 },
    inside: { sql: 'update request_token set used_to_date = 1 where id = $1' },
    outside: { sql: 'update request_token set used_to_date = 2 where id = $1' },
  },
];

const STATUS = `query($id: ID!) { requestToken(id: $id) { status } }`;
const INSPECT = `query($input: InspectRequestTokenInput!) {
  inspectRequestToken(input: $input) { ... on Inspection { redeemable rejectionCode status } }
}`;

/** Issues a token into the owner's client and puts it at the side of the boundary. */
async function tokenAt(c: Case, side: Side) {
  const issued = await issue(server, { scope: 'rules', maxUses: 5, clientId: ownClient, ...c.issue });
  if (side.sql) await server.sql(side.sql, [issued.token.id]);
  return issued;
}

/** What each of status, inspection and the three redemption statements says about a token at one side. */
async function verdicts(c: Case, side: Side) {
  const key = side.key?.() ?? ownKey;
  const input = (jwt: string) => ({ jwt, scope: 'rules', ...side.redeem });
  const [probe, keyed, batched, decoy] = await Promise.all([0, 1, 2, 3].map(() => tokenAt(c, side)));
  // The kid the JWTs were signed with (the batch statement gets it from the codec's verification).
  const jwtKid = (JSON.parse(Buffer.from(probe.jwt.split('.')[0], 'base64url').toString()).kid as string | undefined) ?? 'default';

  const status = (await server.gql(STATUS, { id: probe.token.id }, ownKey)).data.requestToken.status;
  const inspected = (await server.gql(INSPECT, { input: input(probe.jwt) }, key)).data.inspectRequestToken;
  const outcome = async (jwt: string, extra: Record<string, unknown>) => {
    const res = (await server.gql(REDEEM, { input: { ...input(jwt), ...extra } }, key)).data.redeemRequestToken;
    return res.__typename === 'Redemption' ? 'redeemed' : res.code;
  };
  const alone = await outcome(probe.jwt, {});
  const withKey = await outcome(keyed.jwt, { idempotencyKey: `k-${keyed.token.id}` });

  // The batch statement, as the batcher sends it, with a decoy that always redeems beside the probed token.
  const tenant = key === ownKey ? ownClient : otherClient;
  const url = side.redeem?.url ? new URL(String(side.redeem.url)) : null;
  const row = (tokenId: string, n: number, redeem: Record<string, unknown>, asTenant: string) => ({
    n,
    tokenId,
    scope: redeem.scope ?? 'rules',
    host: url ? url.host : null,
    path: url ? url.pathname : null,
    params: JSON.stringify(url ? paramsOf(url) : {}),
    userId: redeem.userId ?? null,
    tenant: asTenant,
    kid: jwtKid,
    clientIp: null,
    userAgent: 'rules test',
  });
  const { rows } = await server.db.pool.query(
    REDEEM_BATCH_SQL.text,
    REDEEM_BATCH_SQL.values({
      batch: [
        row(batched.token.id, 0, side.redeem ?? {}, tenant),
        row(decoy.token.id, 1, side.redeem ?? {}, ownClient),
      ],
      ids: [batched.token.id, decoy.token.id],
      tolerance: TOLERANCE,
    }),
  );
  const batch = rows.some((r) => r.n === 0) ? 'redeemed' : 'no row';
  return { status, inspected, alone, withKey, batch };
}

function paramsOf(url: URL) {
  const params: Record<string, string[]> = {};
  for (const [name, value] of url.searchParams) (params[name] ??= []).push(value);
  return params;
}

describe('the redemption rules agree at every boundary (status, inspection, and every redemption statement)', () => {
  it('cover every check of the list', () => {
    expect(CASES.map((c) => c.code)).toEqual(REDEMPTION_CHECKS.map((c) => c.code));
    expect(CASES.map((c) => c.status)).toEqual(REDEMPTION_CHECKS.map((c) => c.status ?? 'ACTIVE'));
  });

  for (const c of CASES) {
    it(`${c.code}: a token just inside redeems everywhere and shows ACTIVE`, async () => {
      const seen = await verdicts(c, c.inside);
      expect(seen).toEqual({
        status: 'ACTIVE',
        inspected: { redeemable: true, rejectionCode: null, status: 'ACTIVE' },
        alone: 'redeemed',
        withKey: 'redeemed',
        batch: 'redeemed',
      });
    });

    it(`${c.code}: a token just outside is refused with it everywhere and shows ${c.status}`, async () => {
      const seen = await verdicts(c, c.outside);
      expect(seen).toEqual({
        status: c.status,
        // Another client's token: inspection shows no token, as redemption names none.
        inspected: {
          redeemable: false,
          rejectionCode: c.code,
          status: c.code === 'TOKEN_NOT_FOUND' ? null : c.status,
        },
        alone: c.code,
        withKey: c.code,
        batch: 'no row',
      });
    });
  }
});
