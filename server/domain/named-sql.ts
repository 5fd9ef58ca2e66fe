/**
 * Hand-written statements with named parameters. A statement is written with `:name` placeholders; `namedStatement`
 * numbers them (`$1::type`, in order of first appearance) once, at load, and `values` turns an object of parameters
 * into the positional array `pg` sends. A placeholder without a declared type fails at load, not at the first request.
 */

/** The PostgreSQL types parameters are declared with (each placeholder is cast to its type). */
export type SqlType = 'text' | 'bigint' | 'bigint[]' | 'int' | 'json' | 'jsonb' | 'timestamptz';

export type ParamTypes<N extends string = string> = Readonly<Record<N, SqlType>>;

export interface NamedStatement<N extends string> {
  /** The prepared statement's name (one text per name per connection). */
  name: string;
  text: string;
  /** The placeholders' names in the order of the positional parameters (`$1` is the first). */
  params: readonly N[];
  /** The declared type of each placeholder. */
  types: ParamTypes<N>;
  /** The parameters' values in placeholder order; jsonb values are sent as their JSON text. */
  values(params: Readonly<Record<N, unknown>>): unknown[];
  /** The statement with these parameters, as `pg` runs it (`pool.query(config)`, queryPrepared). */
  bind(params: Readonly<Record<N, unknown>>): { name: string; text: string; values: unknown[] };
}

// `:name`, but not the second colon of a cast (`::type`) nor inside an identifier.
const PLACEHOLDER = /(?<![:\w]):([a-zA-Z][a-zA-Z0-9]*)\b/g;

/** The names of the placeholders in `sql`, in order of first appearance. */
export function placeholders(sql: string): string[] {
  return [...new Set([...sql.matchAll(PLACEHOLDER)].map((m) => m[1]))];
}

/** Replaces every `:name` by `bind(name)`; `bind` throws (or returns null) for a name it does not know. */
export function bindPlaceholders(sql: string, bind: (name: string) => string | null): string {
  return sql.replace(PLACEHOLDER, (_match, name: string) => {
    const expression = bind(name);
    if (expression === null) throw new Error(`SQL placeholder :${name} has no binding`);
    return expression;
  });
}

/** A value as a statement parameter: JSON travels as its text. */
export const sqlValue = (type: SqlType, value: unknown): unknown =>
  (type === 'jsonb' || type === 'json') && value !== null && value !== undefined ? JSON.stringify(value) : (value ?? null);

export function namedStatement<N extends string>(name: string, sql: string, types: ParamTypes<N>): NamedStatement<N> {
  const order = placeholders(sql) as N[];
  for (const n of order) if (!(n in types)) throw new Error(`statement ${name}: :${n} has no declared type`);
  const position = new Map(order.map((n, i) => [n, i + 1]));
  const text = bindPlaceholders(sql, (n) => `$${position.get(n as N)}::${types[n as N]}`);
  const values = positionalReader(order, types);
  return { name, text, params: order, types, values, bind: (params) => ({ name, text, values: values(params) }) };
}

/**
 * The statement's `values`: a function of its own that reads each parameter by its name, `[p.tokenId ?? null, …]`.
 * A loop over the names read them by a computed key at one site shared by every statement, which the engine could
 * not specialise for any of them: measured at one request at a time, 8 µs of a redemption's 540 went to reading its
 * 17 parameters, against 1 now (docs/hot-path.md). The names are placeholders (letters and digits, PLACEHOLDER), and
 * are written into the function as JSON strings all the same.
 */
function positionalReader<N extends string>(order: readonly N[], types: ParamTypes<N>) {
  const items = order.map((n) => {
    const value = `params[${JSON.stringify(n)}]`;
    return types[n] === 'json' || types[n] === 'jsonb' ? `sqlValue('json', ${value})` : `${value} ?? null`;
  });
  return new Function('sqlValue', `return (params) => [${items.join(', ')}];`)(sqlValue) as (
    params: Readonly<Record<N, unknown>>,
  ) => unknown[];
}
