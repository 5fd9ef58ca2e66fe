// The hand-written baseline the benchmark compares the service against: node:http + jose + pg, no GraphQL, no ORM.
// It does the same work per request (API key check, JSON in and out, JWT verify or sign with HMAC-SHA-256 by
// node:crypto as the service does, the same SQL with named prepared statements, the same pool size) and nothing else.
// Every attempt is logged, as the service logs it: a refusal that no token owns (a bad signature, a malformed JWT)
// with the service's own statement for such a row, one per request (the service queues these rows and writes them by
// COPY, off the request path: what the refuse scenario compares). `/redeem-bare` stores nothing for them, as the
// baseline did until 2026-11-30: the refuse-bare scenario, printed for comparison (BENCHMARKS.md, "Method").
import { createHash, createHmac, createSecretKey, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import pg from 'pg';
import {
  ISSUE_SQL,
  LOG_COLUMNS,
  LOG_COUNT_SQL,
  LOG_PAGE_SQL,
  REDEEM_SQL,
  LOG_UNOWNED_REFUSAL_SQL,
  REFUSE_SQL,
  runStatsStatement,
  signHs256,
  usageStatsQuery,
  tokenFromRow,
} from './sql.js';

const env = process.env;
const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: Number(env.DB_POOL_SIZE ?? 10) });
pool.on('error', () => {});
// HS256 by node:crypto, synchronously, with a key object made once: what the service does for its HS256 keys
// (server/domain/jwt.ts). Until issue 14 the baseline used jose's Web Crypto HMAC (an asynchronous job per token, several
// times the CPU), which favoured the service in redeem, refuse and issue.
const key = createSecretKey(Buffer.from(env.REQUEST_TOKEN_SECRET!, 'utf8'));
const HEADER = { alg: 'HS256', typ: 'JWT' };
const headers = new Map<string, boolean>();
/** The claims of an HS256 JWS signed with `key`, or null (malformed, another algorithm, a bad signature). */
function verify(jwt: string): Record<string, unknown> | null {
  const first = jwt.indexOf('.');
  const last = jwt.lastIndexOf('.');
  if (first <= 0 || first === last) return null;
  const segment = jwt.slice(0, first);
  let accepted = headers.get(segment);
  if (accepted === undefined) {
    try {
      accepted = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')).alg === 'HS256';
    } catch {
      accepted = false;
    }
    if (headers.size < 256) headers.set(segment, accepted);
  }
  if (!accepted) return null;
  const expected = createHmac('sha256', key).update(jwt.slice(0, last)).digest();
  const signature = jwt.slice(last + 1);
  const given = Buffer.from(signature, 'base64url');
  if (given.length !== expected.length || given.toString('base64url') !== signature || !timingSafeEqual(given, expected)) return null;
  try {
    return JSON.parse(Buffer.from(jwt.slice(first + 1, last), 'base64url').toString('utf8'));
  } catch {
    return null;
  }
}
const apiKeyHash = createHash('sha256').update(`Bearer ${env.REQUEST_TOKEN_ADMIN_KEY}`).digest();
const authorised = (header: string | undefined) =>
  header !== undefined && timingSafeEqual(createHash('sha256').update(header).digest(), apiKeyHash);

const send = (res: ServerResponse, status: number, body: unknown) => {
  const json = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(json) });
  res.end(json);
};

const seconds = (d: Date) => Math.floor(d.getTime() / 1000);
// The service's own row mapping, without the two fields its GraphQL answer does not select either.
const token = (row: any) => {
  const { clientId: _client, kid: _kid, ...fields } = tokenFromRow(row);
  return fields;
};

async function redeem(input: any, logUnowned = true) {
  if (typeof input?.jwt !== 'string' || typeof input.scope !== 'string') return { code: 'VALIDATION_FAILED' };
  const claims: any = verify(input.jwt);
  if (!claims) {
    if (!logUnowned) return { code: 'TOKEN_SIGNATURE_INVALID' };
    const values = { code: 'TOKEN_SIGNATURE_INVALID', userId: input.userId ?? null, clientIp: input.clientIp ?? null,
      userAgent: input.userAgent ?? null, tenant: null };
    const logged = await pool.query({
      name: LOG_UNOWNED_REFUSAL_SQL.name,
      text: LOG_UNOWNED_REFUSAL_SQL.text,
      values: LOG_UNOWNED_REFUSAL_SQL.values(values),
    });
    return { code: 'TOKEN_SIGNATURE_INVALID', logId: String(logged.rows[0].id) };
  }
  // An admin key's tenant (null: every client's tokens), as the service's; no URL, no clock tolerance.
  const values = { tokenId: claims.jti, scope: input.scope, host: null, path: null, params: {}, userId: input.userId ?? null,
    tenant: null, kid: 'default', clientIp: input.clientIp ?? null, userAgent: input.userAgent ?? null, tolerance: 0 };
  // No idempotency key: the service's statement then writes no key row either.
  const used = await pool.query({
    name: REDEEM_SQL.name,
    text: REDEEM_SQL.text,
    values: REDEEM_SQL.values({ ...values, key: null, fingerprint: null }),
  });
  if (used.rows[0]) {
    const row = used.rows[0];
    return {
      id: String(row.log_id),
      loginMode: row.login_mode,
      authenticateAs: row.login_mode === 'NONE' ? null : row.user_id,
      data: row.data,
      usesRemaining: row.max_uses - row.used_to_date,
      token: token(row),
    };
  }
  const refused = await pool.query({ name: REFUSE_SQL.name, text: REFUSE_SQL.text, values: REFUSE_SQL.values(values) });
  return { code: refused.rows[0]?.error_code, logId: String(refused.rows[0]?.id) };
}

async function issue(input: any) {
  if (typeof input?.scope !== 'string') return { code: 'VALIDATION_FAILED' };
  const { rows } = await pool.query({
    name: ISSUE_SQL.name,
    text: ISSUE_SQL.text,
    // The default client ('1') and the default key id, as the service issues for an admin key.
    values: ISSUE_SQL.values({ scope: input.scope, targetUrl: null, host: null, path: null, params: null,
      userId: input.userId ?? null, loginMode: 'NONE', data: null, maxUses: input.maxUses ?? 1, notBefore: null,
      expiresAt: null, sessionMinutes: 10, clientId: '1', kid: 'default', tolerance: 0 }),
  });
  const row = rows[0];
  const claims: Record<string, unknown> = { jti: String(row.id), sub: row.scope, mod: 'n', max: row.max_uses,
    iat: seconds(row.issued_at) };
  if (row.user_id !== null) claims.aud = row.user_id;
  const jwt = signHs256(HEADER, claims, key);
  return { jwt, url: null, token: token(row) };
}

async function logs(input: any) {
  const first = Number(input?.first ?? 20);
  const [page, count] = await Promise.all([
    pool.query({ name: 'log-page', text: LOG_PAGE_SQL, values: [input.tokenId, first + 1] }),
    pool.query({ name: 'log-count', text: LOG_COUNT_SQL, values: [input.tokenId] }),
  ]);
  return {
    totalCount: count.rows[0].n,
    hasNextPage: page.rows.length > first,
    nodes: page.rows.slice(0, first).map((r) => ({
      id: String(r.id), errorCode: r.error_code, userId: r.user_id, clientIp: r.client_ip, userAgent: r.user_agent,
      statusCode: r.status_code, timestamp: r.timestamp, token: { id: String(r.token_id), scope: r.scope },
    })),
  };
}
void LOG_COLUMNS;

async function stats(input: any) {
  const { text, values } = usageStatsQuery(input.bucket, new Date(input.since), new Date(input.until), null, input.scope ?? null);
  return { rows: await runStatsStatement(pool, text, values) };
}

const routes: Record<string, (input: any) => Promise<unknown>> = {
  '/redeem': redeem,
  '/redeem-bare': (input) => redeem(input, false),
  '/issue': issue,
  '/logs': logs,
  '/stats': stats,
};

const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  const route = routes[req.url ?? ''];
  if (!route || req.method !== 'POST') return send(res, 404, { error: 'not found' });
  if (!authorised(req.headers.authorization)) return send(res, 401, { error: 'unauthenticated' });
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let input: unknown;
    try {
      input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return send(res, 400, { error: 'bad json' });
    }
    route(input).then(
      (result) => send(res, 200, result),
      () => send(res, 500, { error: 'internal' }),
    );
  });
});
server.keepAliveTimeout = 5_000;
server.listen(Number(env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void pool.end().then(() => process.exit(0));
});
