import pg from 'pg';

/** What a named statement's RowDescription told a connection: the columns, their parsers, an empty row. */
interface Described {
  fields: pg.FieldDef[];
  parsers: ((text: string) => unknown)[];
  empty: Record<string, null>;
}

// pg's Query and Result as this module uses them (pg 8's own members, not in its type definitions).
interface Connection {
  bind(options: object): void;
}
interface QueryInternals {
  name?: string;
  portal: string;
  values?: unknown[];
  binary?: boolean;
  rows?: number;
  _accumulateRows: boolean;
  _result: { fields: pg.FieldDef[]; _parsers?: ((text: string) => unknown)[]; _prebuiltEmptyResultObject: object | null };
  hasBeenParsed(connection: Connection): boolean;
  handleError(error: unknown, connection: Connection): void;
  _getRows(connection: Connection, rows?: number): void;
}

const byConnection = new WeakMap<Connection, Map<string, Described>>();
const prepareValue = (pg as unknown as { utils: { prepareValue(value: unknown): unknown } }).utils.prepareValue;
const Base = pg.Query as unknown as new (config: pg.QueryConfig | string) => QueryInternals & {
  prepare(connection: Connection): void;
  handleRowDescription(message: { fields: pg.FieldDef[] }): void;
};

/**
 * A named statement that asks PostgreSQL for its row description once per connection. pg's own Query sends
 * Parse (first time), Bind, Describe, Execute, Sync, and so gets and decodes a RowDescription on every execution, and
 * builds the row's parsers again from it. A prepared statement's result columns cannot change on its connection
 * (PostgreSQL refuses the statement instead: "cached plan must not change result type"), so after the first execution
 * on a connection this one sends Bind, Execute, Sync and decodes rows with what the first RowDescription gave.
 */
class DescribedOnceQuery extends Base {
  private connection: Connection | null = null;

  constructor(config: QueryConfig) {
    // pg's Query copies a config object (every property descriptor, onto an object of the same prototype: about
    // 1.5 µs warm, several times that at one request at a time), and only a text string not; the two fields that
    // follow are all this module's configs add to a text.
    super(config.text as never);
    this.name = config.name;
    this.values = config.values;
  }

  override prepare(connection: Connection): void {
    this.connection = connection;
    const known = this.name && this.hasBeenParsed(connection) ? byConnection.get(connection)?.get(this.name) : undefined;
    if (!known) {
      super.prepare(connection);
      return;
    }
    try {
      const { portal, name: statement, values, binary } = this;
      connection.bind({ portal, statement, values, binary, valueMapper: prepareValue });
    } catch (error) {
      this.handleError(error, connection);
      return;
    }
    this._result.fields = known.fields;
    this._result._parsers = known.parsers;
    this._result._prebuiltEmptyResultObject = known.empty;
    this._accumulateRows = true;
    this._getRows(connection, this.rows);
  }

  override handleRowDescription(message: { fields: pg.FieldDef[] }): void {
    super.handleRowDescription(message);
    if (!this.name || !this.connection || !this._result._parsers) return;
    let known = byConnection.get(this.connection);
    if (!known) byConnection.set(this.connection, (known = new Map()));
    known.set(this.name, {
      fields: this._result.fields,
      parsers: this._result._parsers,
      empty: this._result._prebuiltEmptyResultObject as Record<string, null>,
    });
  }

  override handleError(error: unknown, connection: Connection): void {
    if (this.name) byConnection.get(connection)?.delete(this.name);
    super.handleError(error, connection);
  }
}

type QueryConfig = { name: string; text: string; values: unknown[] };

/** Another way to run some named statements on a pool (Citus: server/database/citus.ts); undefined: as they are. */
export type StatementRouter = (config: QueryConfig) => Promise<pg.QueryResult> | undefined;
const routers = new WeakMap<object, StatementRouter>();

/** Whether `pool`'s statements go through a router (routeStatements). */
export const isRouted = (pool: pg.Pool): boolean => routers.has(pool);

/** Named statements that `queryPrepared` runs on `pool` go through `router` first. */
export function routeStatements(pool: pg.Pool, router: StatementRouter): void {
  routers.set(pool, router);
}

/**
 * Runs a named statement (prepared on its first use per connection, described once: DescribedOnceQuery) on the pool
 * or a client: `pool.query(config)` without the Describe. A pool with a router (routeStatements) asks it first.
 */
export function queryPrepared<R extends pg.QueryResultRow>(
  pool: pg.Pool | pg.ClientBase,
  config: QueryConfig,
): Promise<pg.QueryResult<R>> {
  const routed = routers.get(pool)?.(config);
  return (routed as Promise<pg.QueryResult<R>> | undefined) ?? describedOnce<R>(pool, config);
}

/** `queryPrepared` without a router: what a router runs its own statements with. */
export function describedOnce<R extends pg.QueryResultRow>(
  pool: pg.Pool | pg.ClientBase,
  config: QueryConfig,
): Promise<pg.QueryResult<R>> {
  const query = new DescribedOnceQuery(config);
  return new Promise((resolve, reject) => {
    (pool as pg.Pool).query(query as never, (error: Error | undefined, result: pg.QueryResult<R>) =>
      error ? reject(error) : resolve(result),
    );
  });
}
