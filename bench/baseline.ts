// The hand-written baseline the benchmark compares the service against: node:http + jose + pg, no GraphQL, no ORM.
// It does the same work per request (API key check, JSON in and out, JWT verify or sign with a CryptoKey imported
// once, the same SQL with named prepared statements, the same pool size) and nothing else.
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { compactVerify, SignJWT } from 'jose';
import pg from 'pg';
import {
  ISSUE_SQL,
  LOG_COLUMNS,
  LOG_COUNT_SQL,
  LOG_PAGE_SQL,
  REDEEM_SQL,
  REFUSE_SQL,
  STATS_STATEMENT_TIMEOUT_MS,
  usageStatsQuery,
  tokenFromRow,
} from './sql.js';

const env = process.env;
const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: Number(env.DB_POOL_SIZE ?? 10) });
pool.on('error', () => {});
const key = await crypto.subtle.importKey(
  'raw',
  new TextEncoder().encode(env.REQUEST_TOKEN_SECRET!),
  { name: 'HMAC', hash: 'SHA-256' },
  false,
  ['sign', 'verify'],
);
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

async function redeem(input: any) {
  if (typeof input?.jwt !== 'string' || typeof input.scope !== 'string') return { code: 'VALIDATION_FAILED' };
  let claims: any;
  try {
    const { payload } = await compactVerify(input.jwt, key, { algorithms: ['HS256'] });
    claims = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return { code: 'TOKEN_SIGNATURE_INVALID' };
  }
  const values = [claims.jti, input.scope, null, null, '{}', input.userId ?? null, input.clientIp ?? null,
    input.userAgent ?? null, 0];
  // No idempotency key ($10, $11): the service's statement then writes no key row either.
  // No idempotency key ($10, $11), an admin key's tenant ($12: null, every client's tokens), the default key ($13),
  // as the service's.
  const used = await pool.query({ name: 'redeem', text: REDEEM_SQL, values: [...values, null, null, null, 'default'] });
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
  const refused = await pool.query({ name: 'refuse', text: REFUSE_SQL, values: [...values, null, 'default'] });
  return { code: refused.rows[0]?.error_code, logId: String(refused.rows[0]?.id) };
}

async function issue(input: any) {
  if (typeof input?.scope !== 'string') return { code: 'VALIDATION_FAILED' };
  const { rows } = await pool.query({
    name: 'issue-token',
    text: ISSUE_SQL,
    // The default client ('1') and the default key id, as the service issues for an admin key.
    values: [input.scope, null, null, null, null, input.userId ?? null, 'NONE', null, input.maxUses ?? 1, null, null, 10,
      '1', 'default'],
  });
  const row = rows[0];
  const claims: Record<string, unknown> = { jti: String(row.id), sub: row.scope, mod: 'n', max: row.max_uses,
    iat: seconds(row.issued_at) };
  if (row.user_id !== null) claims.aud = row.user_id;
  const jwt = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key);
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
  const client = await pool.connect();
  try {
    await client.query('begin read only');
    await client.query(`set local statement_timeout = ${STATS_STATEMENT_TIMEOUT_MS}`);
    const { rows } = await client.query(text, values);
    await client.query('commit');
    return { rows };
  } catch (error) {
    await client.query('rollback').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

const routes: Record<string, (input: any) => Promise<unknown>> = {
  '/redeem': redeem,
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
