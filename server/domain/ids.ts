/**
 * Row ids are PostgreSQL bigints, and the API carries them as decimal strings (GraphQL ID). One parser for every id
 * that reaches a query: whatever is not a positive bigint written plainly (non-numeric, negative, zero, a leading zero,
 * 20 digits, or 19 digits past 9223372036854775807) cannot name a row, so callers answer "not found" (or say the input
 * is invalid) instead of letting PostgreSQL fail the cast (22003).
 */
const BIGINT_MAX = 9_223_372_036_854_775_807n;
const DIGITS = /^[1-9]\d{0,18}$/;

/** Whether `id` can name a row of a bigint-keyed table. */
export function isDatabaseId(id: unknown): id is string {
  return typeof id === 'string' && DIGITS.test(id) && (id.length < 19 || BigInt(id) <= BIGINT_MAX);
}

/** The id itself when a row can have it, else null. */
export const parseId = (id: unknown): string | null => (isDatabaseId(id) ? id : null);

/** The ids of `ids` that can name a row, without repeats. */
export const parseIds = (ids: readonly unknown[]): string[] => [...new Set(ids.filter(isDatabaseId))];
