import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Config } from '../server/config.js';
import type { LoginMode } from '../server/database/entities/request-token.js';
import { storedClientIp } from '../server/domain/privacy.js';
import { ensureLogPartitions } from '../server/domain/log-partitions.js';
import { DEFAULT_KID } from '../server/domain/signing-keys.js';
import { parseHttpUrl, urlParts } from '../server/domain/target-url.js';
import { MAX_SCOPE_LENGTH } from '../server/domain/tokens.js';
import { MAX_USER_AGENT_LENGTH } from '../server/domain/validation.js';

/**
 * Imports django-request-token's two tables (its migrations up to 0012) into the service's database, for one API
 * client. Token ids are kept, so the `jti` of every JWT already sent still names its token.
 *
 * Everything is staged first (COPY, batch by batch, into temporary tables in one transaction), then checked as a whole
 * (rows that cannot be mapped, ids taken by other rows), and only then written: a problem found anywhere writes
 * nothing. A token or log row already imported (same id, same identity) is skipped, so a second run imports only what
 * was added since; a token used in Django since the last run has its use count brought forward.
 */

export const DJANGO_TOKEN_TABLE = 'request_token_requesttoken';
export const DJANGO_LOG_TABLE = 'request_token_requesttokenlog';
export const DEFAULT_IMPORT_BATCH = 5_000;
/** Conflicts and unmappable rows listed before giving up; the count says how many there are in all. */
const MAX_LISTED = 20;

const LOGIN_MODES: Record<string, LoginMode> = { None: 'NONE', Request: 'REQUEST', Session: 'SESSION' };

export interface DjangoImportOptions {
  /** The Django database (a client of its own: the import reads it in one read-only snapshot). */
  source: pg.Client;
  /** The service's database. */
  target: pg.Pool;
  /** Schema of the Django tables; default the source connection's current schema (its search_path). */
  schema?: string | null;
  /** API client name; default "default". */
  client?: string | null;
  /**
   * The ring key that checks the Django links: "default" (REQUEST_TOKEN_SECRET is the SECRET_KEY; the tokens get no
   * kid) or the kid of the SECRET_KEY added with `signing-keys add --verify-only`. Redemption requires a JWT to be
   * verified by its token's key, so the added key redeems the imported tokens and no others.
   */
  kid?: string | null;
  dryRun?: boolean;
  batchSize?: number;
  /** Base for pre-0.4 `target_url` values that are paths ("/foo"): those bind to this origin's host. */
  targetOrigin?: string | null;
  /** The service's id sequences move this far past Django's largest ids, for Django to go on issuing meanwhile. */
  reserveIds?: number;
  /** How client IPs are stored (CLIENT_IP_STORAGE), as the service stores them. */
  config: Pick<Config, 'clientIpStorage' | 'clientIpHashSalt'>;
  progress?: (line: string) => void;
}

export interface DjangoImportResult {
  dryRun: boolean;
  clientId: string;
  tokens: { read: number; imported: number; skipped: number; usesBroughtForward: number; adjusted: number };
  logs: { read: number; imported: number; skipped: number; adjusted: number };
}

/** The import cannot go ahead; nothing was written. `problems` lists what to fix. */
export class DjangoImportError extends Error {
  constructor(
    message: string,
    readonly problems: string[] = [],
  ) {
    super(message);
    this.name = 'DjangoImportError';
  }
}

/** A COPY text-format field. */
const copyField = (v: string | number | null) =>
  v === null
    ? '\\N'
    : String(v).replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

interface SourceLayout {
  schema: string;
  /** `data` is jsonb/json (2.x and later) or text holding JSON (before). */
  dataIsText: boolean;
  hasTargetUrl: boolean;
  clientIpIsInet: boolean;
}

async function sourceLayout(source: pg.Client, schema: string | null | undefined): Promise<SourceLayout> {
  const name = schema ?? (await source.query<{ s: string }>('select current_schema() as s')).rows[0].s;
  const { rows } = await source.query<{ table_name: string; column_name: string; data_type: string }>(
    `select table_name, column_name, data_type from information_schema.columns
     where table_schema = $1 and table_name in ($2, $3)`,
    [name, DJANGO_TOKEN_TABLE, DJANGO_LOG_TABLE],
  );
  const columns = (table: string) => new Map(rows.filter((r) => r.table_name === table).map((r) => [r.column_name, r.data_type]));
  const token = columns(DJANGO_TOKEN_TABLE);
  const log = columns(DJANGO_LOG_TABLE);
  if (token.size === 0) throw new DjangoImportError(`no table ${name}.${DJANGO_TOKEN_TABLE} in the source database (give --schema?)`);
  if (log.size === 0) throw new DjangoImportError(`no table ${name}.${DJANGO_LOG_TABLE} in the source database`);
  const missing = [
    ...['id', 'login_mode', 'user_id', 'scope', 'expiration_time', 'not_before_time', 'data', 'issued_at', 'max_uses', 'used_to_date']
      .filter((c) => !token.has(c))
      .map((c) => `${DJANGO_TOKEN_TABLE}.${c}`),
    ...['id', 'token_id', 'user_id', 'user_agent', 'client_ip', 'status_code', 'timestamp']
      .filter((c) => !log.has(c))
      .map((c) => `${DJANGO_LOG_TABLE}.${c}`),
  ];
  if (missing.length) throw new DjangoImportError(`not django-request-token's layout: no column ${missing.join(', ')}`);
  return {
    schema: name,
    dataIsText: !/json/.test(token.get('data')!),
    hasTargetUrl: token.has('target_url'),
    clientIpIsInet: log.get('client_ip') === 'inet',
  };
}

const STAGE_SQL = `
  create temporary table django_token (
    id bigint primary key, scope text not null, target_url text, target_host text, target_path text, target_params jsonb,
    user_id text, login_mode text not null, data jsonb, max_uses int not null, used_to_date int not null,
    issued_at timestamptz, not_before timestamptz, expires_at timestamptz
  ) on commit drop;
  create temporary table django_log (
    id bigint primary key, token_id bigint not null, user_id text, client_ip text, user_agent text, status_code smallint,
    timestamp timestamptz not null
  ) on commit drop;`;

/** Maps one Django token row to the staging table's fields, or says why it cannot be imported. */
function tokenFields(
  row: Record<string, any>,
  layout: SourceLayout,
  targetOrigin: string | null,
): { fields: (string | number | null)[]; adjusted: boolean } | string {
  const id = String(row.id);
  const mode = LOGIN_MODES[row.login_mode];
  if (!mode) return `token ${id}: login_mode "${row.login_mode}" is none of None, Request, Session`;
  if (typeof row.scope !== 'string' || row.scope.length === 0 || row.scope.length > MAX_SCOPE_LENGTH) {
    return `token ${id}: scope must be 1–${MAX_SCOPE_LENGTH} characters`;
  }
  let data: string | null = null;
  if (row.data !== null) {
    if (layout.dataIsText) {
      if (row.data.trim() !== '') {
        try {
          const parsed: unknown = JSON.parse(row.data);
          data = parsed === null ? null : JSON.stringify(parsed);
        } catch {
          return `token ${id}: data is not JSON`;
        }
      }
    } else {
      data = JSON.stringify(row.data);
    }
  }
  // A token that Django refuses for its uses stays refused for them, whatever its odd counts: max_uses below 1 is
  // stored as 1 (with that use gone), a negative count as 0.
  let maxUses = Number(row.max_uses);
  let usedToDate = Math.max(0, Number(row.used_to_date));
  const adjusted = maxUses < 1 || Number(row.used_to_date) < 0;
  if (maxUses < 1) {
    maxUses = 1;
    usedToDate = Math.max(usedToDate, 1);
  }
  let target: (string | null)[] = [null, null, null, null];
  const rawUrl: unknown = layout.hasTargetUrl ? row.target_url : null;
  if (typeof rawUrl === 'string' && rawUrl.trim() !== '') {
    let absolute = rawUrl;
    if (rawUrl.startsWith('/') && !rawUrl.startsWith('//')) {
      if (!targetOrigin) return `token ${id}: target_url "${rawUrl}" is a path: give --target-origin (e.g. https://www.example.com) to bind it`;
      absolute = new URL(rawUrl, targetOrigin).toString();
    }
    const parsed = parseHttpUrl(absolute);
    if (typeof parsed === 'string') return `token ${id}: target_url "${rawUrl}" ${parsed}`;
    const parts = urlParts(parsed);
    target = [absolute, parts.host, parts.path, JSON.stringify(parts.params)];
  }
  return {
    adjusted,
    fields: [
      id,
      row.scope,
      ...target,
      row.user_id === null ? null : String(row.user_id),
      mode,
      data,
      maxUses,
      usedToDate,
      row.issued_at,
      row.not_before_time,
      row.expiration_time,
    ],
  };
}

function logFields(row: Record<string, any>, config: DjangoImportOptions['config']): { fields: (string | number | null)[]; adjusted: boolean } {
  let adjusted = false;
  let ip: string | null = row.client_ip === null ? null : String(row.client_ip).trim();
  if (ip === '') ip = null;
  if (ip !== null && (isIP(ip) === 0 || ip.length > 45)) {
    ip = null;
    adjusted = true;
  }
  let agent: string | null = row.user_agent;
  if (agent !== null && agent.length > MAX_USER_AGENT_LENGTH) {
    agent = agent.slice(0, MAX_USER_AGENT_LENGTH);
    adjusted = true;
  }
  let status: number | null = row.status_code;
  if (status !== null && (status < 0 || status > 32767)) {
    status = null;
    adjusted = true;
  }
  return {
    adjusted,
    fields: [
      String(row.id),
      String(row.token_id),
      row.user_id === null ? null : String(row.user_id),
      ip === null ? null : storedClientIp(ip, config),
      agent,
      status,
      row.timestamp,
    ],
  };
}

/**
 * Reads `table` in id order, `batch` rows at a time, and COPYs each batch into a staging table. Rows `map` refuses are
 * collected in `problems` (all of them counted, the first few listed).
 */
async function stage(
  source: pg.Client,
  target: pg.PoolClient,
  spec: {
    select: string;
    /** The table read, for the count shown with the progress. */
    from: string;
    into: string;
    label: string;
    batch: number;
    map(row: Record<string, any>): { fields: (string | number | null)[]; adjusted: boolean } | string;
    problems: string[];
    progress: (line: string) => void;
  },
): Promise<{ read: number; adjusted: number; refused: number; total: number }> {
  const { rows: counted } = await source.query<{ n: string }>(`select count(*) as n from ${spec.from}`);
  const total = Number(counted[0].n);
  let read = 0;
  let adjusted = 0;
  let refused = 0;
  let after = '0';
  for (;;) {
    const { rows } = await source.query(spec.select, [after, spec.batch]);
    if (rows.length === 0) break;
    const lines: string[] = [];
    for (const row of rows) {
      const mapped = spec.map(row);
      if (typeof mapped === 'string') {
        refused++;
        if (spec.problems.length < MAX_LISTED) spec.problems.push(mapped);
        continue;
      }
      if (mapped.adjusted) adjusted++;
      lines.push(mapped.fields.map(copyField).join('\t'));
    }
    if (lines.length) await pipeline(Readable.from([`${lines.join('\n')}\n`]), target.query(copyFrom(spec.into)));
    read += rows.length;
    after = String(rows[rows.length - 1].id);
    spec.progress(`${spec.label}: ${read}/${total} read`);
    if (rows.length < spec.batch) break;
  }
  return { read, adjusted, refused, total };
}

export async function importDjango(options: DjangoImportOptions): Promise<DjangoImportResult> {
  const { source, target } = options;
  const batch = options.batchSize ?? DEFAULT_IMPORT_BATCH;
  const progress = options.progress ?? (() => {});
  const dryRun = options.dryRun ?? false;
  const clientName = options.client ?? 'default';

  const { rows: clients } = await target.query<{ id: string }>('select id from api_client where name = $1', [clientName]);
  if (!clients[0]) throw new DjangoImportError(`no API client named "${clientName}" (create it: request-token clients create)`);
  const clientId = String(clients[0].id);
  const kid = options.kid && options.kid !== DEFAULT_KID ? options.kid : null;
  if (kid !== null) {
    const { rows: keys } = await target.query<{ state: string }>('select state from signing_key where kid = $1', [kid]);
    if (!keys[0]) {
      throw new DjangoImportError(
        `no signing key "${kid}": add the Django SECRET_KEY first (request-token signing-keys add --kid ${kid} --secret-file FILE --verify-only)`,
      );
    }
    if (keys[0].state === 'retired') throw new DjangoImportError(`signing key "${kid}" is retired: its links would all be refused`);
  }

  // One snapshot of the Django tables: a log row read later always finds its token among those read.
  await source.query('begin isolation level repeatable read read only');
  await source.query(`set local datestyle to 'ISO'`);
  const layout = await sourceLayout(source, options.schema);
  const schema = ident(layout.schema);
  // Times travel as text: exact to the microsecond, and compared exactly on a second run.
  const tokenSelect = `select id, login_mode, user_id, scope, expiration_time::text, not_before_time::text,
      data${layout.dataIsText ? '::text' : ''} as data, issued_at::text, max_uses, used_to_date
      ${layout.hasTargetUrl ? ', target_url' : ''}
    from ${schema}.${DJANGO_TOKEN_TABLE} where id > $1 order by id limit $2`;
  const logSelect = `select id, token_id, user_id, user_agent, ${layout.clientIpIsInet ? 'host(client_ip)' : 'client_ip::text'} as client_ip,
      status_code, timestamp::text as timestamp
    from ${schema}.${DJANGO_LOG_TABLE} where id > $1 order by id limit $2`;

  const conn = await target.connect();
  try {
    await conn.query('begin');
    // Large imports outlast a request's statement timeout; the transaction is this command's own.
    await conn.query(`set local statement_timeout = 0`);
    await conn.query(`set local idle_in_transaction_session_timeout = 0`);
    // Bringing uses forward waits for a token's row while a redemption holds it: briefly, but longer than a request may.
    await conn.query(`set local lock_timeout = '60s'`);
    await conn.query(STAGE_SQL);
    const problems: string[] = [];
    const tokens = await stage(source, conn, {
      select: tokenSelect,
      from: `${schema}.${DJANGO_TOKEN_TABLE}`,
      into: `copy django_token (id, scope, target_url, target_host, target_path, target_params, user_id, login_mode, data,
        max_uses, used_to_date, issued_at, not_before, expires_at) from stdin`,
      label: 'tokens',
      batch,
      map: (row) => tokenFields(row, layout, options.targetOrigin ?? null),
      problems,
      progress,
    });
    const logs = await stage(source, conn, {
      select: logSelect,
      from: `${schema}.${DJANGO_LOG_TABLE}`,
      into: 'copy django_log (id, token_id, user_id, client_ip, user_agent, status_code, timestamp) from stdin',
      label: 'log rows',
      batch,
      map: (row) => logFields(row, options.config),
      problems,
      progress,
    });
    await source.query('commit');
    if (tokens.refused > 0) {
      throw new DjangoImportError(`${tokens.refused} token${tokens.refused === 1 ? '' : 's'} cannot be imported; nothing was written`, problems);
    }

    await conn.query('analyze django_token; analyze django_log');
    // A row of ours with an imported id is the imported row itself (same client, scope and issue time; for a log row,
    // same token and time), else the id is taken.
    const conflicts = await conn.query<{ what: string; id: string }>(
      `(select 'token' as what, s.id::text from django_token s join request_token t on t.id = s.id
         where not (t.client_id = $1 and t.scope = s.scope and (s.issued_at is null or t.issued_at = s.issued_at))
         order by s.id)
       union all
       (select 'log row', s.id::text from django_log s join request_token_log l on l.id = s.id
         where not (l.client_id is not distinct from $1::bigint and l.token_id is not distinct from s.token_id
           and l.timestamp = s.timestamp)
         order by s.id)
       union all
       -- Django's foreign key makes this impossible, unless a copy of its tables lost it.
       (select 'orphan', s.id::text from django_log s
         where not exists (select 1 from django_token t where t.id = s.token_id) order by s.id)`,
      [clientId],
    );
    const orphans = conflicts.rows.filter((c) => c.what === 'orphan');
    if (orphans.length) {
      throw new DjangoImportError(
        `${orphans.length} log row${orphans.length === 1 ? '' : 's'} name no token of the Django table; nothing was written`,
        orphans.slice(0, MAX_LISTED).map((c) => `log row id ${c.id}: its token_id is not in ${DJANGO_TOKEN_TABLE}`),
      );
    }
    if (conflicts.rowCount) {
      const listed = conflicts.rows
        .slice(0, MAX_LISTED)
        .map((c) => `${c.what} id ${c.id} is taken by another ${c.what} in the service's database`);
      throw new DjangoImportError(
        `${conflicts.rowCount} id${conflicts.rowCount === 1 ? '' : 's'} conflict with existing rows; nothing was written`,
        listed,
      );
    }

    const { rows: counts } = await conn.query<{ new_tokens: number; forward: number; new_logs: number }>(
      `select
         (select count(*)::int from django_token s where not exists (select 1 from request_token t where t.id = s.id)) as new_tokens,
         (select count(*)::int from django_token s join request_token t on t.id = s.id where s.used_to_date > t.used_to_date) as forward,
         (select count(*)::int from django_log s where not exists (select 1 from request_token_log l where l.id = s.id)) as new_logs`,
    );
    const { new_tokens, forward, new_logs } = counts[0];
    const result: DjangoImportResult = {
      dryRun,
      clientId,
      tokens: { read: tokens.read, imported: new_tokens, skipped: tokens.read - new_tokens, usesBroughtForward: forward, adjusted: tokens.adjusted },
      logs: { read: logs.read, imported: new_logs, skipped: logs.read - new_logs, adjusted: logs.adjusted },
    };
    if (dryRun) {
      await conn.query('rollback');
      return result;
    }

    await conn.query(
      `insert into request_token (id, scope, target_url, target_host, target_path, target_params, user_id, login_mode,
         data, max_uses, used_to_date, issued_at, not_before, expires_at, client_id, kid)
       select id, scope, target_url, target_host, target_path, target_params, user_id, login_mode, data, max_uses,
         used_to_date, coalesce(issued_at, now()), not_before, expires_at, $1, $2
       from django_token s where not exists (select 1 from request_token t where t.id = s.id)`,
      [clientId, kid],
    );
    // Uses counted by Django since the last run (both systems side by side) are not given back.
    await conn.query(
      `update request_token t set used_to_date = s.used_to_date from django_token s
       where t.id = s.id and s.used_to_date > t.used_to_date`,
    );
    // The log has a partition per month and no default one: the months of the imported rows are created first.
    const { rows: span } = await conn.query<{ oldest: Date | null; newest: Date | null }>(
      `select min(timestamp) as oldest, max(timestamp) as newest from django_log s
       where not exists (select 1 from request_token_log l where l.id = s.id)`,
    );
    if (span[0].oldest && span[0].newest) {
      await ensureLogPartitions(conn, { from: span[0].oldest, to: span[0].newest }, { inTransaction: true });
    }
    await conn.query(
      `insert into request_token_log (id, token_id, user_id, client_ip, user_agent, status_code, timestamp, client_id)
       select id, token_id, user_id, client_ip, user_agent, status_code, timestamp, $1
       from django_log s where not exists (select 1 from request_token_log l where l.id = s.id)`,
      [clientId],
    );
    // New rows of the service take ids past every imported one (and past the reserve, for Django to go on issuing).
    const reserve = options.reserveIds ?? 0;
    await conn.query(
      `select setval(pg_get_serial_sequence('request_token', 'id'),
         greatest((select last_value from request_token_id_seq), (select coalesce(max(id), 0) from django_token) + $1, 1)),
       setval(pg_get_serial_sequence('request_token_log', 'id'),
         greatest((select last_value from request_token_log_id_seq), (select coalesce(max(id), 0) from django_log) + $1, 1))`,
      [reserve],
    );
    await conn.query('commit');
    return result;
  } catch (error) {
    await conn.query('rollback').catch(() => {});
    await source.query('rollback').catch(() => {});
    throw error;
  } finally {
    conn.release();
  }
}
