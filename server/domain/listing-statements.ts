import type pg from 'pg';
import type { QueryBuilder } from '@mikro-orm/postgresql';
import type { EntityManager } from '@mikro-orm/postgresql';
import { tenantEm, type TenantDeps } from '../database/tenant.js';
import { queryPrepared } from '../database/prepared-query.js';

/**
 * Listings' statements, built by the QueryBuilder once per shape and run as named prepared statements.
 *
 * A listing (a page of tokens or logs, its count) goes through the QueryBuilder with the tenant filter, which stays the
 * single source of its SQL. Building, cloning and compiling that QueryBuilder cost most of a page's CPU, so it is built
 * once per SHAPE: which filters are present, tenant or admin, cursor or not, page or count, and whatever else changes
 * the statement's text (the caller's `shape`). It is built with a stand-in value for each run-time value (the tenant
 * included), the stand-ins are found among `getParams()`, and every later run of that shape binds the real values in
 * their places on the pool, under the statement's name (parsed and planned once per connection).
 *
 * A stand-in that does not come back as exactly one parameter of its own (inlined into the text, dropped, or merged)
 * fails the build: a value, and so a tenant, can never be baked into a cached statement.
 */

/** What running a listing needs: the caller's tenant (and the ORM to build with), and the pool to run on. */
export type ListingDeps = TenantDeps & { pool: pg.Pool };

/** The run-time values of one shape: every one becomes a parameter. */
export type ListingValues = Readonly<Record<string, string | number | Date>>;

interface CachedListing {
  name: string;
  text: string;
  /** Each parameter: the name of a run-time value, or (for anything the shape fixes) its constant. */
  params: ({ value: string } | { constant: unknown })[];
}

const TENANT = '$tenant';
const cache = new Map<string, CachedListing>();
let named = 0;
let caching = true;

/**
 * Runs `work` with every listing built afresh with its real values and run unnamed (the path before the cache): the
 * tests compare the two paths' answers.
 */
export async function withoutListingCache<T>(work: () => Promise<T>): Promise<T> {
  caching = false;
  try {
    return await work();
  } finally {
    caching = true;
  }
}

/** The number of shapes built so far (tests read it). */
export const listingShapesBuilt = () => cache.size;

/**
 * Stand-ins of the run-time values' own kinds (the QueryBuilder may treat a number or a date differently from a
 * string), each unlike any real value and unlike each other.
 */
function standIn(name: string, kind: unknown, index: number): string | number | Date {
  if (typeof kind === 'number') return 1_987_650_000 + index;
  if (kind instanceof Date) return new Date(Date.UTC(1901, 0, 1, 0, 0, 0, index + 1));
  return `\u0000${name}\u0000${index}`;
}

const sameValue = (a: unknown, b: unknown) =>
  a instanceof Date && b instanceof Date ? a.getTime() === b.getTime() : a === b;

/** Wraps the built statement's text in an outer one; `param(name)` places the run-time value `name` in it. */
export type OuterStatement = (inner: string, param: (name: string) => string) => string;

function build(
  deps: ListingDeps,
  key: string,
  values: ListingValues,
  query: (em: EntityManager, values: ListingValues) => QueryBuilder<any, any>,
  outer?: OuterStatement,
): CachedListing {
  const names = Object.keys(values);
  const standIns: Record<string, string | number | Date> = {};
  names.forEach((name, i) => (standIns[name] = standIn(name, values[name], i)));
  // The tenant is a stand-in too: one statement serves every tenant, and the filter's condition is in its text.
  const tenantStandIn = deps.tenant === null ? null : standIn(TENANT, '', names.length);
  const qb = query(tenantEm(deps.orm, tenantStandIn as string | null), standIns);
  const inner = qb.getQuery();
  const built = qb.getParams();
  const all: [string, unknown][] = Object.entries(standIns);
  if (tenantStandIn !== null) all.push([TENANT, tenantStandIn]);
  const params = built.map((param): CachedListing['params'][number] => {
    const found = all.find(([, standIn]) => sameValue(param, standIn));
    return found ? { value: found[0] } : { constant: param };
  });
  const text = outer
    ? outer(inner, (name) => {
        if (!(name in values)) throw new Error(`listing ${key}: no value ${name}`);
        params.push({ value: name });
        return `$${params.length}`;
      })
    : inner;
  for (const [name, standIn] of all) {
    const uses = params.filter((p) => 'value' in p && p.value === name).length;
    if (uses === 0 || (typeof standIn === 'string' && text.includes(standIn))) {
      throw new Error(`listing ${key}: the value ${name} is not a parameter of the built statement`);
    }
  }
  return { name: `listing-${++named}`, text, params };
}

/**
 * Runs a listing's statement of this shape with these values and returns its raw rows (column names, pg's types).
 * `query` builds it on the EntityManager given (confined to the caller's tenant, or not for admin keys), with `values`
 * (stand-ins when it is called): it must depend only on the shape, which `shape` names, and on `values`' names.
 */
export async function runListing<Row>(
  deps: ListingDeps,
  shape: string,
  values: ListingValues,
  query: (em: EntityManager, values: ListingValues) => QueryBuilder<any, any>,
  outer?: OuterStatement,
): Promise<Row[]> {
  if (!caching) return (await uncached(deps, values, query, outer)) as Row[];
  const key = `${shape}|${deps.tenant === null ? 'admin' : 'tenant'}|${Object.keys(values).join(',')}`;
  let statement = cache.get(key);
  if (!statement) cache.set(key, (statement = build(deps, key, values, query, outer)));
  const params = statement.params.map((p) => ('constant' in p ? p.constant : p.value === TENANT ? deps.tenant : values[p.value]));
  const result = await queryPrepared(deps.pool, { name: statement.name, text: statement.text, values: params });
  return result.rows as Row[];
}

async function uncached(
  deps: ListingDeps,
  values: ListingValues,
  query: (em: EntityManager, values: ListingValues) => QueryBuilder<any, any>,
  outer?: OuterStatement,
): Promise<unknown[]> {
  const qb = query(tenantEm(deps.orm, deps.tenant), values);
  const params = [...qb.getParams()];
  const text = outer
    ? outer(qb.getQuery(), (name) => `$${params.push(values[name])}`)
    : qb.getQuery();
  return (await deps.pool.query({ text, values: params })).rows;
}
