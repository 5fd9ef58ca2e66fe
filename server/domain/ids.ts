/** The largest PostgreSQL bigint: ids above it cannot exist, and casting them fails (22003) instead of matching nothing. */
const BIGINT_MAX = 9_223_372_036_854_775_807n;

/**
 * Whether `id` can name a row of a bigint-keyed table: digits only (no sign, no leading zero), within bigint. Callers answer "not
 * found" (or match nothing) for anything else, so no id reaches SQL that would fail there.
 */
export function isDatabaseId(id: unknown): id is string {
  return typeof id === 'string' && /^[1-9]\d{0,18}$/.test(id) && (id.length < 19 || BigInt(id) <= BIGINT_MAX);
}
