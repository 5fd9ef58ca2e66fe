/**
 * Row ids are PostgreSQL bigints, and the API carries them as decimal strings (GraphQL ID). One parser for every id
 * that reaches a query: whatever is not a positive bigint (non-numeric, negative, zero, 20 digits, or 19 digits past
 * 9223372036854775807) cannot name a row, so callers answer "not found" (or say the input is invalid) instead of
 * letting PostgreSQL fail the cast.
 */
const MAX_BIGINT = 9_223_372_036_854_775_807n;
const DIGITS = /^\d{1,19}$/;

/** The canonical form of a row id ("007" is "7"), or null when no row can have it. */
export function parseId(id: unknown): string | null {
  if (typeof id !== 'string' && typeof id !== 'number') return null;
  const text = String(id);
  if (!DIGITS.test(text)) return null;
  const value = BigInt(text);
  return value >= 1n && value <= MAX_BIGINT ? value.toString() : null;
}

/** The ids of `ids` that can name a row, canonical, without repeats. */
export const parseIds = (ids: readonly unknown[]): string[] => [
  ...new Set(ids.map(parseId).filter((id): id is string => id !== null)),
];
