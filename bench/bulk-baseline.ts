// Bulk issuance baseline: the same recipients CSV, the rows stored with COPY in one transaction (ids reserved from
// the sequence first, since COPY returns nothing), every JWT signed with the same key through jose, and the same
// userId,tokenId,link CSV written out. Usage: bulk-baseline.ts recipients.csv > links.csv
import { readFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { SignJWT } from 'jose';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { csvField, parseCsv } from '../cli/csv.js';

const env = process.env;
const scope = env.BULK_SCOPE ?? 'bulk';
const [header, ...rows] = parseCsv(await readFile(process.argv[2], 'utf8'));
const userCol = header.indexOf('userId');
const key = await crypto.subtle.importKey(
  'raw',
  new TextEncoder().encode(env.REQUEST_TOKEN_SECRET!),
  { name: 'HMAC', hash: 'SHA-256' },
  false,
  ['sign'],
);

// COPY text format: tab-separated, \N for null, backslash escapes.
const copyText = (v: string | null) => (v === null ? '\\N' : v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r'));

const client = new pg.Client({ connectionString: env.DATABASE_URL });
await client.connect();
await client.query('begin');
const { rows: ids } = await client.query(
  `select nextval(pg_get_serial_sequence('request_token', 'id'))::text as id from generate_series(1, $1)`,
  [rows.length],
);
const issuedAt = new Date();
const lines = rows.map((row, i) => {
  const data: Record<string, string> = {};
  header.forEach((name, col) => {
    if (col !== userCol && row[col]) data[name] = row[col];
  });
  const json = Object.keys(data).length ? JSON.stringify(data) : null;
  return `${ids[i].id}\t${copyText(scope)}\t${copyText(row[userCol] || null)}\t${copyText(json)}\t1\t${issuedAt.toISOString()}\t1\n`;
});
await pipeline(
  Readable.from(lines),
  client.query(copyFrom('copy request_token (id, scope, user_id, data, max_uses, issued_at, client_id) from stdin')),
);
await client.query('commit');
await client.end();

const iat = Math.floor(issuedAt.getTime() / 1000);
const out: string[] = ['userId,tokenId,link'];
const CHUNK = 1000;
for (let start = 0; start < rows.length; start += CHUNK) {
  const chunk = rows.slice(start, start + CHUNK);
  const jwts = await Promise.all(
    chunk.map((row, j) => {
      const claims: Record<string, unknown> = { jti: ids[start + j].id, sub: scope, mod: 'n', max: 1, iat };
      if (row[userCol]) claims.aud = row[userCol];
      return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key);
    }),
  );
  chunk.forEach((row, j) => out.push([row[userCol], ids[start + j].id, jwts[j]].map(csvField).join(',')));
}
process.stdout.write(`${out.join('\n')}\n`);
