import type pg from 'pg';
import {
  citusLayoutLine,
  detectCitus,
  distributeTables,
  installDelegatedStatements,
  routeDelegatedStatements,
  type CitusLayout,
  type DelegatedStatement,
  type DistributionPlan,
  type ShardedStatement,
} from '../database/citus.js';

export { logIsDistributed } from '../database/citus.js';
import { BULK_ISSUE_STATEMENT } from './bulk-issue.js';
import { REDEEM_ALONE_SQL, REDEEM_SQL, REFUSE_SQL } from './redeem.js';
import { bindPlaceholders, type NamedStatement } from './named-sql.js';
import { redeemableSql, verdictCte } from './redemption-rules.js';
import { ISSUE_SQL, ISSUE_WITH_ID_SQL, TOKEN_ROW_FIELDS, tokenColumns, tokenFields, type TokenRow } from './tokens.js';
import { columnName } from '../database/rows.js';
import { checkout } from '../database/checkout.js';

/**
 * How the service's tables live on Citus. Every hot statement names one token by id, so the tables are distributed by
 * token: `request_token` by `id`, its log and idempotency keys by `token_id`, co-located (a token's rows share a shard,
 * and a redemption's UPDATE and INSERTs run on one worker, as one local transaction). The small tables every statement
 * may join (clients, API keys, signing keys) are reference tables, copied to every node. `mikro_orm_migrations` stays a
 * plain table on the coordinator, where migrations run.
 */
export const CITUS_PLAN: DistributionPlan = {
  reference: ['api_client', 'api_key', 'signing_key'],
  distributed: [
    { table: 'request_token', column: 'id' },
    { table: 'request_token_log', column: 'token_id', colocateWith: 'request_token' },
    { table: 'request_token_idempotency', column: 'token_id', colocateWith: 'request_token' },
  ],
};

/** Whether `layout` is the planned one: every table of CITUS_PLAN distributed or reference as planned. */
export const isDistributed = (layout: CitusLayout): boolean =>
  CITUS_PLAN.reference.every((t) => layout.tables.some((x) => x.name === t && x.type === 'reference')) &&
  CITUS_PLAN.distributed.every((d) =>
    layout.tables.some((x) => x.name === d.table && x.type === 'distributed' && x.column === d.column),
  );

/**
 * The hot statements as Citus runs them: each a PL/pgSQL function delegated to the worker of the token's shard, doing
 * what the statement does in statements that each touch that token's rows only. The conditions come from the same
 * rules (redemption-rules.ts), the columns from the same lists; the function takes the statement's own parameters.
 */
async function delegatedStatements(pool: pg.Pool): Promise<DelegatedStatement[]> {
  // The returned token columns with their catalog types (a function's result types must match exactly).
  const { rows } = await pool.query<{ name: string; type: string }>(
    `select attname as name, format_type(atttypid, atttypmod) as type from pg_attribute
     where attrelid = 'request_token'::regclass and attnum > 0 and not attisdropped`,
  );
  const typeOf = new Map(rows.map((r) => [r.name, r.type]));
  const token = [...TOKEN_ROW_FIELDS.map(columnName), 'client_id', 'kid'].map((c) => `${c} ${typeOf.get(c)}`);
  const tokenWithStatus = [...token, 'status text'];

  /** `body` with the placeholders of `statement` bound to its positional parameters, as the function receives them. */
  const delegate = (
    statement: NamedStatement<string>,
    body: string,
    returns: string[],
    extra: Partial<DelegatedStatement> = {},
  ): DelegatedStatement => {
    const position = (name: string) => statement.params.indexOf(name) + 1;
    return {
      statement: statement.name,
      argTypes: statement.params.map((n) => statement.types[n]),
      body: bindPlaceholders(body, (n) => (position(n) > 0 ? `$${position(n)}::${statement.types[n]}` : null)),
      returns,
      distributionArgument: position('tokenId'),
      colocateWith: 'request_token',
      ...extra,
    };
  };

  const redeemBody = ({ skipLocked }: { skipLocked: boolean }) => `declare
  r record;
  log_id bigint;
  logged_at timestamptz;
begin
  ${skipLocked ? 'perform from request_token t where t.id = :tokenId for update skip locked;' : ''}
  ${skipLocked ? 'if not found then return; end if;' : ''}
  update request_token t set used_to_date = t.used_to_date + 1
  where t.id = :tokenId and ${redeemableSql('t')}
  returning ${tokenFields('t')} into r;
  if not found then return; end if;
  insert into request_token_log (token_id, user_id, client_ip, user_agent, client_id)
  values (:tokenId, :userId, :clientIp, :userAgent, r.client_id) returning id, timestamp into log_id, logged_at;
  if :key is not null then
    insert into request_token_idempotency (token_id, key, fingerprint, log_id, log_timestamp)
    values (:tokenId, :key, :fingerprint, log_id, logged_at);
  end if;
  return query select ${tokenColumns('r')}, log_id;
end`;

  const refuseBody = `declare
  v record;
  log_id bigint;
begin
  with ${verdictCte()} select * into v from verdict;
  -- Every check passes (the token became redeemable again): no row, the caller retries the success path.
  if v.code is null then return; end if;
  -- No stored token of the caller's: its log row (token id 0) lives on another shard; the caller writes it there.
  if v.id is null then return query select null::bigint, null::bigint, v.code::text; return; end if;
  insert into request_token_log (token_id, error_code, user_id, client_ip, user_agent, client_id)
  values (v.id, v.code, :userId, :clientIp, :userAgent, v.client_id) returning id into log_id;
  return query select log_id, v.id, v.code::text;
end`;

  const issueBody = `declare
  expiry timestamptz := coalesce(:expiresAt,
    case when :loginMode = 'SESSION' then now() + make_interval(mins => :sessionMinutes) end);
  r record;
begin
  if not ((expiry is null or expiry > now()) and (:notBefore is null or expiry is null or :notBefore < expiry)) then
    return;
  end if;
  insert into request_token (id, scope, target_url, target_host, target_path, target_params, user_id, login_mode, data,
    max_uses, not_before, expires_at, client_id, kid)
  values (:id, :scope, :targetUrl, :host, :path, :params, :userId, :loginMode, :data, :maxUses, :notBefore, expiry,
    :clientId, :kid)
  returning ${tokenFields()} into r;
  return query select ${tokenColumns('r')};
end`;

  return [
    delegate(REDEEM_SQL, redeemBody({ skipLocked: false }), [...tokenWithStatus, 'log_id bigint']),
    delegate(REDEEM_ALONE_SQL, redeemBody({ skipLocked: true }), [...tokenWithStatus, 'log_id bigint']),
    delegate(REFUSE_SQL, refuseBody, ['id bigint', 'token_id bigint', 'error_code text']),
    {
      // The new token's id decides its shard, so it is drawn first, on the coordinator (one more short round trip),
      // and the function takes ISSUE_SQL's parameters after it.
      ...delegate(ISSUE_WITH_ID_SQL, issueBody, tokenWithStatus, {
        prepend: { text: `select nextval(pg_get_serial_sequence('request_token', 'id'))` },
      }),
      statement: ISSUE_SQL.name,
      distributionArgument: ISSUE_WITH_ID_SQL.params.indexOf('id') + 1,
    },
  ];
}

/**
 * Bulk issuance on Citus: the ids are drawn on the coordinator first (with the shard each falls in), the checks against
 * the present made on its clock, then one INSERT per shard, each a single-shard statement, all in one distributed
 * transaction (all or nothing, as on plain PostgreSQL). The answer is the statement's: the tokens in id order, or no
 * row at all when a check failed.
 */
const bulkIssue: ShardedStatement = {
  statement: BULK_ISSUE_STATEMENT,
  async run(pool, values) {
    const columns = values.slice(0, 11) as unknown[][];
    const [sessionMinutes, clientIds, kid, tolerance] = values.slice(11) as [number, unknown[], string, number];
    const count = columns[0].length;
    const client = await checkout(pool);
    try {
      await client.query('begin');
      const { rows: checked } = await client.query<{ ok: boolean }>(
        `select coalesce(bool_and((c.expiry is null or c.expiry > now())
           and (c.not_before is null or c.expiry is null or c.not_before < c.expiry)), true) as ok
         from (select not_before, coalesce(expires_at,
           case when login_mode = 'SESSION' then now() + make_interval(mins => $4) end) as expiry
           from unnest($1::timestamptz[], $2::timestamptz[], $3::text[]) as i(not_before, expires_at, login_mode)) c`,
        [columns[9], columns[10], columns[6], sessionMinutes],
      );
      if (!checked[0].ok) {
        await client.query('rollback');
        return { rows: [] };
      }
      const { rows: ids } = await client.query<{ id: string; shard: string }>(
        `select id::text, get_shard_id_for_distribution_column('request_token', id)::text as shard
         from (select nextval(pg_get_serial_sequence('request_token', 'id')) as id from generate_series(1, $1) g) s`,
        [count],
      );
      // Rows per statement at most: 14 parameters each, under PostgreSQL's 65,535 per statement.
      const chunk = 4_000;
      const groups = new Map<string, number[][]>();
      ids.forEach((r, i) => {
        const shard = groups.get(r.shard) ?? [[]];
        if (shard[shard.length - 1].length === chunk) shard.push([]);
        shard[shard.length - 1].push(i);
        groups.set(r.shard, shard);
      });
      const rows: TokenRow[] = [];
      for (const indexes of [...groups.values()].flat()) {
        const params: unknown[] = [sessionMinutes, kid, tolerance];
        const tuples = indexes.map((i) => {
          const at = (value: unknown, type: string) => `$${params.push(value)}::${type}`;
          const c = (k: number) => columns[k][i];
          const expiry = `coalesce(${at(c(10), 'timestamptz')}, case when ${at(c(6), 'text')} = 'SESSION' then now() + make_interval(mins => $1::int) end)`;
          return `(${at(ids[i].id, 'bigint')}, ${at(c(0), 'text')}, ${at(c(1), 'text')}, ${at(c(2), 'text')}, ${at(c(3), 'text')},
            ${at(c(4), 'jsonb')}, ${at(c(5), 'text')}, ${at(c(6), 'text')}, ${at(c(7), 'jsonb')}, ${at(c(8), 'int')},
            ${at(c(9), 'timestamptz')}, ${expiry}, ${at(clientIds[i], 'bigint')}, $2::text)`;
        });
        const { rows: stored } = await client.query<TokenRow>(
          `with stored as (
             insert into request_token (id, scope, target_url, target_host, target_path, target_params, user_id, login_mode,
               data, max_uses, not_before, expires_at, client_id, kid)
             values ${tuples.join(', ')}
             returning ${tokenFields()}
           )
           select ${tokenColumns('stored', '$3::int')} from stored`,
          params,
        );
        rows.push(...stored);
      }
      await client.query('commit');
      rows.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
      return { rows };
    } catch (error) {
      await client.query('rollback').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  },
};

/**
 * `request-token citus distribute`: distributes the tables as CITUS_PLAN says (idempotent, on a database with rows
 * too) and installs the delegated hot statements. Returns the layout afterwards.
 */
export async function distributeForCitus(pool: pg.Pool, log: (line: string) => void): Promise<CitusLayout> {
  const client = await checkout(pool);
  try {
    const { changed } = await distributeTables(client, CITUS_PLAN, log);
    if (changed.length === 0) log('every table was already distributed as planned');
  } finally {
    client.release();
  }
  const installed = await installDelegatedStatements(pool, await delegatedStatements(pool));
  if (installed.length > 0) log(`delegated functions installed: ${installed.join(', ')}`);
  return (await detectCitus(pool))!;
}

export interface CitusStartup {
  layout: CitusLayout | null;
  /** True when the tables are distributed and the hot pool routes its statements to the delegated functions. */
  routed: boolean;
}

/**
 * At start-up: finds out whether the database is Citus and logs the layout in one line. When the tables are
 * distributed, the delegated functions are brought up to date with this version's statements and the hot pool sends
 * those statements as function calls (router tasks). On plain PostgreSQL nothing changes.
 */
export async function startCitus(pool: pg.Pool, log: (line: string) => void): Promise<CitusStartup> {
  const layout = await detectCitus(pool);
  if (!layout) return { layout: null, routed: false };
  log(citusLayoutLine(layout));
  if (!isDistributed(layout)) {
    log('citus: the tables are not distributed yet: run `request-token citus distribute`');
    return { layout, routed: false };
  }
  const statements = await delegatedStatements(pool);
  await installDelegatedStatements(pool, statements);
  routeDelegatedStatements(pool, statements, [bulkIssue]);
  return { layout, routed: true };
}
