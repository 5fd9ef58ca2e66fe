// The data of `npm run bench:scale` (bench/scale.ts): tokens and log rows of two tenants over the last days, generated
// deterministically and stored with COPY into the schema as migrated. The rows are the ones the service writes (the
// columns of ISSUE_SQL, REDEEM_SQL, REFUSE_SQL and the refusal log's COPY); each log row's verdict follows from its
// token's state at that moment (expiry, revocation, uses left), so the tokens' used_to_date agrees with their logs.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { urlParts } from '../server/domain/target-url.js';

export interface SeedSize {
  tokens: number;
  logs: number;
  days: number;
}

export interface Tenant {
  clientId: string;
  name: string;
  /** Share of the tokens and of the traffic. */
  share: number;
  /** Scopes and their weights. */
  scopes: [string, number][];
}

export const TENANTS: Omit<Tenant, 'clientId'>[] = [
  {
    name: 'scale-newsletter',
    share: 0.7,
    scopes: [
      ['newsletter-daily', 40],
      ['newsletter-weekly', 25],
      ['unsubscribe', 15],
      ['login', 10],
      ['password-reset', 5],
      ['invite', 5],
    ],
  },
  {
    name: 'scale-shop',
    share: 0.3,
    scopes: [
      ['order-status', 45],
      ['download', 25],
      ['login', 15],
      ['password-reset', 5],
      ['review-request', 10],
    ],
  },
];

/** Distinct users per tenant; a few are very active (the draw is skewed towards low numbers). */
export const USERS_PER_TENANT = 200_000;
export const userName = (tenant: number, user: number) => `${tenant === 0 ? 'reader' : 'customer'}-${user}`;

const USER_AGENTS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36',
  'curl/8.5.0',
];

/** A small, fast, seeded PRNG (mulberry32), so that two passes over the log draw the same rows. */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pickWeighted = <T>(choices: [T, number][], r: number): T => {
  const total = choices.reduce((n, [, w]) => n + w, 0);
  let x = r * total;
  for (const [value, weight] of choices) {
    x -= weight;
    if (x < 0) return value;
  }
  return choices[choices.length - 1][0];
};

const field = (v: string | number | null) =>
  v === null ? '\\N' : typeof v === 'number' ? String(v) : v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n');
const iso = (ms: number) => new Date(ms).toISOString();

/** What the log's generator needs to know of each token (index = token id - 1). */
interface TokenState {
  tenant: Uint8Array;
  user: Int32Array; // -1: none
  maxUses: Uint16Array;
  used: Uint16Array;
  expiresAt: Float64Array; // ms, 0: never
  revokedAt: Float64Array; // ms, 0: not revoked
  targeted: Uint8Array;
}

/** The seed's plan: token attributes drawn up front, so that the log can follow each token's state. */
export function planTokens(size: SeedSize, now: number) {
  const n = size.tokens;
  const span = size.days * 86_400_000;
  const start = now - span;
  const random = rng(1);
  const state: TokenState = {
    tenant: new Uint8Array(n),
    user: new Int32Array(n),
    maxUses: new Uint16Array(n),
    used: new Uint16Array(n),
    expiresAt: new Float64Array(n),
    revokedAt: new Float64Array(n),
    targeted: new Uint8Array(n),
  };
  const scope = new Array<string>(n);
  const issuedAt = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const tenant = random() < TENANTS[0].share ? 0 : 1;
    const s = pickWeighted(TENANTS[tenant].scopes, random());
    issuedAt[i] = start + ((i + random()) / n) * span;
    const personal = s === 'login' || s === 'password-reset' || random() < 0.75;
    state.tenant[i] = tenant;
    scope[i] = s;
    state.user[i] = personal ? Math.floor(USERS_PER_TENANT * random() ** 2) : -1;
    state.maxUses[i] =
      s === 'login' || s === 'password-reset' ? 1 : s.startsWith('newsletter') ? 50 : s === 'download' ? 20 : s === 'order-status' ? 10 : 5;
    const life = s === 'login' ? 900_000 : s === 'password-reset' ? 3_600_000 : s.startsWith('newsletter') ? 30 * 86_400_000 : random() < 0.5 ? 7 * 86_400_000 : 0;
    state.expiresAt[i] = life ? issuedAt[i] + life : 0;
    state.revokedAt[i] = random() < 0.01 ? issuedAt[i] + random() * 3 * 86_400_000 : 0;
    state.targeted[i] = s.startsWith('newsletter') || s === 'download' || s === 'order-status' ? 1 : 0;
  }
  return { state, scope, issuedAt, start, span };
}

type Plan = ReturnType<typeof planTokens>;

interface LogRow {
  tokenIndex: number; // -1: no token
  tenant: number;
  errorCode: string | null;
  user: number; // -1: none
  ip: number;
  agent: number;
  status: number | null;
  at: number;
  releasedAt: number;
}

/**
 * The log, oldest first (ids follow time, as the sequence gives them): each attempt draws a token issued shortly
 * before it (most links are followed within hours, some days later), or none (garbage, a forged signature or an
 * unknown id). One row object is reused: read it before the next. The token state (uses) changes as the service's
 * would.
 */
export function* walkLog(plan: Plan, size: SeedSize): Generator<LogRow> {
  const { state, issuedAt, start, span } = plan;
  const n = size.tokens;
  const random = rng(2);
  state.used.fill(0);
  const row: LogRow = { tokenIndex: -1, tenant: 0, errorCode: null, user: -1, ip: 0, agent: 0, status: null, at: 0, releasedAt: 0 };
  const week = Math.max(1, Math.floor((n * 7 * 86_400_000) / span));
  for (let k = 0; k < size.logs; k++) {
    const at = start + ((k + random()) / size.logs) * span;
    row.at = at;
    row.ip = Math.floor(random() * 4_000_000);
    row.agent = Math.floor(random() * USER_AGENTS.length);
    row.status = null;
    row.releasedAt = 0;
    const kind = random();
    if (kind < 0.06) {
      // No token: a malformed JWT, a forged signature or an unknown id. The caller's key names the tenant.
      row.tokenIndex = -1;
      row.tenant = random() < TENANTS[0].share ? 0 : 1;
      row.errorCode = kind < 0.025 ? 'TOKEN_MALFORMED' : kind < 0.05 ? 'TOKEN_SIGNATURE_INVALID' : 'TOKEN_NOT_FOUND';
      row.user = -1;
      yield row;
      continue;
    }
    const latest = Math.min(n - 1, Math.floor(((at - start) / span) * n));
    let i = latest - Math.floor(random() ** 3 * week);
    if (i < 0) i = 0;
    // Short-lived links (a login, a password reset) are mostly followed at once: the attempt is then on a fresh one.
    // Short-lived or single-use links (a login, a password reset) are mostly followed once, at once: most attempts
    // that would find one expired or used up are on a fresh one instead.
    if (((state.expiresAt[i] && state.expiresAt[i] < at) || state.used[i] >= state.maxUses[i]) && random() < 0.9) i = latest;
    while (i > 0 && issuedAt[i] > at) i--;
    row.tokenIndex = i;
    row.tenant = state.tenant[i];
    row.user = state.user[i];
    const odd = random();
    if (state.revokedAt[i] && state.revokedAt[i] < at) row.errorCode = 'TOKEN_REVOKED';
    else if (state.expiresAt[i] && state.expiresAt[i] < at) row.errorCode = 'TOKEN_EXPIRED';
    else if (odd < 0.015) row.errorCode = 'SCOPE_MISMATCH';
    else if (odd < 0.02 && row.user >= 0) row.errorCode = 'AUDIENCE_MISMATCH';
    else if (odd < 0.03 && state.targeted[i]) row.errorCode = 'TARGET_URL_MISMATCH';
    else if (state.used[i] >= state.maxUses[i]) row.errorCode = 'MAX_USES_EXCEEDED';
    else row.errorCode = null;
    const s = random();
    if (row.errorCode === null) {
      state.used[i]++;
      // The application records how it answered most redemptions; a 5xx sometimes gives the use back.
      row.status = s < 0.75 ? 200 : s < 0.8 ? 302 : s < 0.83 ? 404 : s < 0.85 ? 500 : null;
      if (row.status === 500 && random() < 0.5) {
        row.releasedAt = at + 1_000;
        state.used[i]--;
      }
    } else if (s < 0.1) {
      row.status = 403;
    }
    yield row;
  }
}

/** Streams `rows` lines as COPY text in chunks. */
function copyStream(lines: () => Generator<string>): Readable {
  return Readable.from(
    (function* () {
      let chunk = '';
      let count = 0;
      for (const line of lines()) {
        chunk += line;
        if (++count === 2000) {
          yield chunk;
          chunk = '';
          count = 0;
        }
      }
      if (chunk) yield chunk;
    })(),
  );
}

export const TOKEN_COPY_COLUMNS = [
  'id', 'scope', 'target_url', 'target_host', 'target_path', 'target_params', 'user_id', 'login_mode', 'data',
  'max_uses', 'used_to_date', 'issued_at', 'not_before', 'expires_at', 'revoked_at', 'client_id', 'kid',
];
export const LOG_COPY_COLUMNS = [
  'id', 'token_id', 'error_code', 'user_id', 'client_ip', 'user_agent', 'status_code', 'timestamp', 'released_at',
  'client_id',
];

export interface SeedOptions {
  size: SeedSize;
  now: number;
  tenants: Tenant[];
  /** What a log row without a token carries in token_id: null (a nullable column) or 0 (the partitioned log). */
  noToken: string | null;
  log?: (line: string) => void;
}

/** Copies the tokens, then the log (the log's first pass only settles each token's final use count). */
export async function seed(db: pg.ClientBase, options: SeedOptions): Promise<{ tokensSeconds: number; logsSeconds: number }> {
  const { size, now, tenants, noToken } = options;
  const plan = planTokens(size, now);
  for (const _ of walkLog(plan, size));
  const finalUsed = Uint16Array.from(plan.state.used);

  const targets = new Map<string, { host: string; path: string; params: string }>();
  const target = (scope: string, i: number) => {
    const url =
      scope === 'download'
        ? `https://shop.example/downloads/${i % 5000}`
        : scope === 'order-status'
          ? `https://shop.example/orders/status?order=${i}`
          : `https://news.example/${scope}/issue-${Math.floor(i / 20_000)}?utm_source=email`;
    let parts = targets.get(url.replace(/\d+$/, ''));
    if (!parts || scope === 'order-status' || scope === 'download') {
      const p = urlParts(new URL(url));
      parts = { host: p.host, path: p.path, params: JSON.stringify(p.params) };
      if (scope !== 'order-status' && scope !== 'download') targets.set(url.replace(/\d+$/, ''), parts);
    }
    return { url, ...parts };
  };

  let started = performance.now();
  const tokens = function* () {
    const { state, scope, issuedAt } = plan;
    for (let i = 0; i < size.tokens; i++) {
      const s = scope[i];
      const user = state.user[i] >= 0 ? userName(state.tenant[i], state.user[i]) : null;
      const mode = user === null ? 'NONE' : s === 'login' ? 'SESSION' : s === 'password-reset' ? 'REQUEST' : 'NONE';
      const t = state.targeted[i] ? target(s, i) : null;
      const data = s.startsWith('newsletter') ? `{"list": "${s.slice(11)}", "issue": ${Math.floor(i / 20_000)}}` : s === 'invite' ? `{"team": ${i % 997}}` : null;
      yield `${[
        i + 1, s, t?.url ?? null, t?.host ?? null, t?.path ?? null, t?.params ?? null, user, mode, data,
        state.maxUses[i], finalUsed[i], iso(issuedAt[i]), null,
        state.expiresAt[i] ? iso(state.expiresAt[i]) : null, state.revokedAt[i] ? iso(state.revokedAt[i]) : null,
        tenants[state.tenant[i]].clientId, null,
      ].map(field).join('\t')}\n`;
    }
  };
  await pipeline(copyStream(tokens), db.query(copyFrom(`copy request_token (${TOKEN_COPY_COLUMNS.join(', ')}) from stdin`)));
  const tokensSeconds = (performance.now() - started) / 1000;
  options.log?.(`${size.tokens} tokens copied in ${tokensSeconds.toFixed(1)} s`);

  started = performance.now();
  const logs = function* () {
    let id = 0;
    for (const r of walkLog(plan, size)) {
      id++;
      const ip = `${10 + (r.ip >>> 16)}.${(r.ip >>> 8) & 255}.${r.ip & 255}.${(id * 7) & 255}`;
      yield `${[
        id, r.tokenIndex < 0 ? noToken : r.tokenIndex + 1, r.errorCode, r.user >= 0 ? userName(r.tenant, r.user) : null, ip,
        USER_AGENTS[r.agent], r.status, iso(r.at), r.releasedAt ? iso(r.releasedAt) : null, tenants[r.tenant].clientId,
      ].map(field).join('\t')}\n`;
    }
  };
  await pipeline(copyStream(logs), db.query(copyFrom(`copy request_token_log (${LOG_COPY_COLUMNS.join(', ')}) from stdin`)));
  const logsSeconds = (performance.now() - started) / 1000;
  options.log?.(`${size.logs} log rows copied in ${logsSeconds.toFixed(1)} s`);
  return { tokensSeconds, logsSeconds };
}
