import type pg from 'pg';
import { describedOnce, routeStatements, type StatementRouter } from './prepared-query.js';
import { checkout } from './checkout.js';

/**
 * Citus (the distributed PostgreSQL extension), seen from the service: what a database's layout is, how tables are
 * distributed, and how hot statements become calls of functions that Citus delegates to the worker holding the shard.
 * What is distributed how is the domain's decision (server/domain/citus.ts); this file only knows Citus.
 */

export interface CitusTable {
  name: string;
  /** Citus's own word: `distributed`, `reference` or `local` (a Citus local table on the coordinator). */
  type: string;
  /** The distribution column of a distributed table. */
  column: string | null;
  colocationId: number;
  shards: number;
}

export interface CitusLayout {
  version: string;
  /** host:port of the coordinator, as registered (null when it was never registered: a single-node install). */
  coordinator: string | null;
  /** host:port of each active primary worker (nodes that hold shards). */
  workers: string[];
  tables: CitusTable[];
}

/** The Citus layout of the database, or null when the citus extension is not installed there. */
export async function detectCitus(db: pg.Pool | pg.ClientBase): Promise<CitusLayout | null> {
  const { rows } = await db.query<{ version: string }>(`select extversion as version from pg_extension where extname = 'citus'`);
  if (rows.length === 0) return null;
  const nodes = await db.query<{ node: string; group_id: number; has_shards: boolean }>(
    `select nodename || ':' || nodeport as node, groupid as group_id, shouldhaveshards as has_shards
     from pg_dist_node where noderole = 'primary' and isactive order by groupid`,
  );
  const tables = await db.query<{ name: string; type: string; column: string; colocation_id: number; shards: number }>(
    `select table_name::text as name, citus_table_type as type, distribution_column as column,
       colocation_id, shard_count::int as shards
     from citus_tables c join pg_class r on r.oid = c.table_name
     -- A partitioned table's partitions are distributed with it: the layout names the table.
     where not r.relispartition and table_name::text not like '%.%' order by 1`,
  );
  return {
    version: rows[0].version,
    coordinator: nodes.rows.find((n) => n.group_id === 0)?.node ?? null,
    workers: nodes.rows.filter((n) => n.group_id !== 0 && n.has_shards).map((n) => n.node),
    tables: tables.rows.map((t) => ({
      name: t.name,
      type: t.type,
      column: t.column === '<none>' ? null : t.column,
      colocationId: t.colocation_id,
      shards: t.shards,
    })),
  };
}

/** The layout in one line, for the start-up log. */
export function citusLayoutLine(layout: CitusLayout): string {
  const of = (type: string) =>
    layout.tables
      .filter((t) => t.type === type)
      .map((t) => (t.column ? `${t.name}(${t.column}, ${t.shards} shards)` : t.name))
      .join(', ') || 'none';
  return (
    `citus ${layout.version}: coordinator ${layout.coordinator ?? 'not registered'}, ` +
    `${layout.workers.length} worker(s) ${layout.workers.join(' ') || '-'}; distributed: ${of('distributed')}; ` +
    `reference: ${of('reference')}`
  );
}

/** One distributed table: its distribution column and the table it is co-located with. */
export interface DistributedTable {
  table: string;
  column: string;
  colocateWith?: string;
}

export interface DistributionPlan {
  /** Replicated to every node; in this order (a table's foreign keys must point at tables made reference before it). */
  reference: string[];
  /** Sharded; the first is the one the others are co-located with. */
  distributed: DistributedTable[];
}

/**
 * Applies `plan` to the database: reference tables first, then the distributed ones. Idempotent (a table already as
 * planned is left alone) and works on tables holding rows (Citus copies them into the shards; the coordinator's local
 * copy is then truncated). One transaction: either everything is distributed or nothing changed.
 *
 * Foreign keys between tables that become distributed are dropped for the moment of distribution and re-added with
 * their own definition: Citus refuses to turn a table into a distributed one while a local table still points at it.
 */
export async function distributeTables(
  client: pg.ClientBase,
  plan: DistributionPlan,
  log: (line: string) => void,
): Promise<{ changed: string[] }> {
  const layout = await detectCitus(client);
  if (!layout) throw new Error('the citus extension is not installed in this database (create extension citus)');
  const typeOf = new Map(layout.tables.map((t) => [t.name, t]));
  const changed: string[] = [];
  await client.query('begin');
  try {
    for (const table of plan.reference) {
      if (typeOf.get(table)?.type === 'reference') continue;
      await client.query('select create_reference_table($1::regclass)', [table]);
      changed.push(table);
      log(`${table}: reference table`);
    }
    const pending = plan.distributed.filter((d) => {
      const now = typeOf.get(d.table);
      if (now?.type !== 'distributed') return true;
      if (now.column !== d.column) throw new Error(`${d.table} is already distributed by ${now.column}, not ${d.column}`);
      return false;
    });
    if (pending.length > 0) {
      const names = plan.distributed.map((d) => d.table);
      const { rows: keys } = await client.query<{ table: string; name: string; definition: string }>(
        `select conrelid::regclass::text as table, conname as name, pg_get_constraintdef(oid) as definition
         from pg_constraint
         where contype = 'f' and conrelid::regclass::text = any($1) and confrelid::regclass::text = any($1)`,
        [names],
      );
      for (const key of keys) await client.query(`alter table ${key.table} drop constraint ${key.name}`);
      for (const d of pending) {
        await client.query('select create_distributed_table($1::regclass, $2, colocate_with => $3)', [
          d.table,
          d.column,
          d.colocateWith ?? 'default',
        ]);
        changed.push(d.table);
        log(`${d.table}: distributed by ${d.column}${d.colocateWith ? `, co-located with ${d.colocateWith}` : ''}`);
      }
      for (const key of keys) await client.query(`alter table ${key.table} add constraint ${key.name} ${key.definition}`);
    }
    // The rows Citus copied into shards are still on the coordinator's disk, invisible: free that space.
    for (const table of changed) await client.query('select truncate_local_data_after_distributing_table($1::regclass)', [table]);
    await client.query('commit');
  } catch (error) {
    await client.query('rollback').catch(() => {});
    throw error;
  }
  return { changed };
}

/**
 * A hot statement run on Citus as a PL/pgSQL function that Citus delegates to the worker holding the shard of its
 * distribution argument. The function's statements each name that one token, so the worker runs them on its local
 * shards, in one local transaction: one round trip from the coordinator and no other node involved (a worker that is
 * down fails only the statements of its own tokens). The same work sent to the coordinator as one statement with
 * modifying CTEs is split by Citus into several distributed steps across nodes.
 */
export interface DelegatedStatement {
  /** The prepared statement's name on the hot pool: a query with this name is sent to the function instead. */
  statement: string;
  /** The function's parameter types: those of the statement, in its order, so that a call passes the same values. */
  argTypes: string[];
  /** The PL/pgSQL body (between BEGIN and END, with a DECLARE section before if needed), parameters as `$n`. */
  body: string;
  /** The columns it returns, `name type` each. */
  returns: string[];
  /** 1-based position of the parameter Citus routes by (a token id). */
  distributionArgument: number;
  /** The table whose shards the argument selects. */
  colocateWith: string;
  /** Runs before the call, on the same pool, and its single value becomes the call's first parameter (a new id). */
  prepend?: { text: string };
}

/** The function's name for a statement: `rt_` and the statement's name in snake case. */
export const functionName = (statement: string) => `rt_${statement.replace(/[^a-z0-9]+/gi, '_').toLowerCase()}`;

/**
 * The settings every delegated function runs with. PL/pgSQL prepares a function's statements once per session and, from
 * the sixth run on, may switch one to a generic plan (without the parameters' values) when it costs no more than the
 * custom ones. Citus cannot plan some of them without the token id's value (the refusal's verdict,
 * `(select 1) left join request_token t on t.id = $1`): that plan fails with "could not create distributed plan", a 500,
 * whenever the costs made PostgreSQL choose it. So each call plans with its values, as a router query.
 */
const FUNCTION_SETTINGS = ['plan_cache_mode=force_custom_plan'];

const functionSql = (d: DelegatedStatement) => `create function ${functionName(d.statement)}(${d.argTypes.join(', ')})
  returns table (${d.returns.join(', ')}) language plpgsql
  ${FUNCTION_SETTINGS.map((s) => `set ${s.replace('=', ' = ')}`).join('\n  ')}
  as $rt$
#variable_conflict use_column
${d.body}
$rt$`;

/**
 * Creates (or replaces, when the statement changed) every delegated function, and registers it with Citus, co-located
 * with its table. Idempotent; concurrent start-ups take turns on an advisory lock.
 */
export async function installDelegatedStatements(pool: pg.Pool, statements: DelegatedStatement[]): Promise<string[]> {
  const client = await checkout(pool);
  const installed: string[] = [];
  try {
    await client.query(`select pg_advisory_lock(hashtext('request-token citus functions'))`);
    for (const d of statements) {
      const name = functionName(d.statement);
      const signature = `${name}(${d.argTypes.join(',')})`;
      const sql = functionSql(d);
      const { rows } = await client.query<{ same: boolean; distributed: boolean }>(
        `select p.prosrc = $2 and coalesce(p.proconfig, '{}') = $3::text[] as same,
           exists (select from pg_dist_object o where o.objid = p.oid) as distributed
         from pg_proc p where p.oid = to_regprocedure($1)`,
        [signature, sql.slice(sql.indexOf('$rt$') + 4, sql.lastIndexOf('$rt$')), FUNCTION_SETTINGS],
      );
      if (rows[0]?.same && rows[0].distributed) continue;
      if (rows[0] && !rows[0].same) await client.query(`drop function ${signature}`);
      await client.query(sql);
      await client.query(
        `select create_distributed_function($1, $2, colocate_with => $3)`,
        [signature, `$${d.distributionArgument}`, d.colocateWith],
      );
      installed.push(name);
    }
  } finally {
    await client.query(`select pg_advisory_unlock(hashtext('request-token citus functions'))`).catch(() => {});
    client.release();
  }
  return installed;
}

/** A hot statement that Citus runs as several single-shard statements: `run` answers as the statement would. */
export interface ShardedStatement {
  statement: string;
  run(pool: pg.Pool, values: unknown[]): Promise<{ rows: unknown[] }>;
}

/**
 * Sends the delegated statements run on `pool` by `queryPrepared` (prepared-query.ts) as calls of their functions: a
 * statement named like one of `statements` runs `select * from rt_…($1, …)` with the same values, one named like a
 * `sharded` one runs as it says. Every other statement, and `pool.query` itself, is unchanged.
 */
export function routeDelegatedStatements(
  pool: pg.Pool,
  statements: DelegatedStatement[],
  sharded: ShardedStatement[] = [],
): void {
  const own = new Map(sharded.map((s) => [s.statement, s]));
  const calls = new Map(
    statements.map((d) => {
      const call = `select * from ${functionName(d.statement)}(${d.argTypes.map((t, i) => `$${i + 1}::${t}`).join(', ')})`;
      return [d.statement, { call, prepend: d.prepend }];
    }),
  );
  const router: StatementRouter = (named) => {
    const split = own.get(named.name);
    if (split) return split.run(pool, named.values) as Promise<pg.QueryResult>;
    const route = calls.get(named.name);
    if (!route) return undefined;
    const name = `${named.name}-citus`;
    if (!route.prepend) return describedOnce(pool, { name, text: route.call, values: named.values });
    const first = route.prepend.text;
    return describedOnce(pool, { name: `${named.name}-citus-first`, text: first, values: [] }).then(({ rows }) =>
      describedOnce(pool, { name, text: route.call, values: [Object.values(rows[0])[0], ...named.values] }),
    );
  };
  routeStatements(pool, router);
}

const logDistributed = new WeakMap<pg.Pool, Promise<boolean>>();

/** Whether the log of `pool`'s database is distributed over Citus: looked up once per pool (on plain PostgreSQL, one query). */
export function logIsDistributed(pool: pg.Pool): Promise<boolean> {
  let known = logDistributed.get(pool);
  if (!known) {
    known = detectCitus(pool).then(
      (layout) => layout?.tables.some((t) => t.name === 'request_token_log' && t.type === 'distributed') ?? false,
    );
    known.catch(() => logDistributed.delete(pool));
    logDistributed.set(pool, known);
  }
  return known;
}
