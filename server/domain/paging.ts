import { raw } from '@mikro-orm/core';
import type { EntityManager, QueryBuilder } from '@mikro-orm/postgresql';
import { runListing, type ListingDeps, type ListingValues, type OuterStatement } from './listing-statements.js';
import { parseId } from './ids.js';
import type { Issues } from './errors.js';

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

export interface PageArgs {
  first?: number | null;
  after?: string | null;
  /**
   * Whether the total will be read (default true): counting a filter over millions of rows costs far more than its
   * page, so a caller that does not select `totalCount` does not pay for it (it is then counted only if read).
   */
  count?: boolean;
}

export interface Page<T> {
  nodes: T[];
  hasNextPage: boolean;
  hasPreviousPage: boolean;
  /** The filter's total, or a function counting it when called (once), when the page was asked for without it. */
  totalCount: number | (() => Promise<number>);
  cursorOf(node: T): string;
}

/** Cursors are opaque: base64url of the row id. Pages run newest first (id descending). */
export const encodeCursor = (id: string) => base64urlOfAscii(`id:${id}`);

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * `Buffer.from(text).toString('base64url')` for an ASCII text (an id's digits), without the Buffer: a page of 20 rows
 * encodes 22 cursors, and the Buffer's allocation and conversion cost several times the encoding itself.
 */
function base64urlOfAscii(text: string): string {
  let out = '';
  let i = 0;
  for (; i + 2 < text.length; i += 3) {
    const n = (text.charCodeAt(i) << 16) | (text.charCodeAt(i + 1) << 8) | text.charCodeAt(i + 2);
    out += BASE64URL[n >> 18] + BASE64URL[(n >> 12) & 63] + BASE64URL[(n >> 6) & 63] + BASE64URL[n & 63];
  }
  if (i + 1 === text.length) {
    const n = text.charCodeAt(i) << 16;
    out += BASE64URL[n >> 18] + BASE64URL[(n >> 12) & 63];
  } else if (i + 2 === text.length) {
    const n = (text.charCodeAt(i) << 16) | (text.charCodeAt(i + 1) << 8);
    out += BASE64URL[n >> 18] + BASE64URL[(n >> 12) & 63] + BASE64URL[(n >> 6) & 63];
  }
  return out;
}

export function decodeCursor(cursor: string): string | null {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const match = /^id:(\d+)$/.exec(text);
  return match ? parseId(match[1]) : null;
}

/** Validates page arguments; returns the page size and the id to continue below (if any). */
export function pageWindow(args: PageArgs, issues: Issues, path: string[] = []): { limit: number; beforeId: string | null } {
  const first = args.first ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(first) || first < 0 || first > MAX_PAGE_SIZE) {
    issues.add([...path, 'first'], `must be between 0 and ${MAX_PAGE_SIZE}`);
  }
  let beforeId: string | null = null;
  if (args.after != null) {
    beforeId = decodeCursor(args.after);
    if (beforeId === null) issues.add([...path, 'after'], 'is not a valid cursor');
  }
  return { limit: first, beforeId };
}

/** A listing: its filtered query, built per shape (listing-statements.ts), and its rows' mapper. */
export interface Listing<T> {
  /** Names the listing and everything besides `values`' names that changes its statement's text. */
  shape: string;
  /** The filter's run-time values (each a parameter of the statement). */
  values: ListingValues;
  /** The filtered query over `values` (stand-ins when it is called), the tenant's filter included by `em`. */
  filtered(em: EntityManager, values: ListingValues): QueryBuilder<any, any>;
  /** The column pages run by (newest first), e.g. `l.id`. */
  idColumn: string;
  /**
   * Columns that lead the page's order before `idColumn` (descending too), each one the filter holds to a single value:
   * the order is the same, and it names an index on (…, those columns, id) to the planner, which then reads the page
   * in that index's order (listTokens' scope).
   */
  leadingOrder?: string[];
  /** The page's own additions to its query (its columns); the count does without them. */
  page?(qb: QueryBuilder<any, any>): void;
  /**
   * A statement around the page's (its rows as `p`, in the page's order), for what is read per row of the page only:
   * each row's token, joined to the page's rows after the limit rather than to every row the filter walks.
   */
  outer?: OuterStatement;
  /**
   * Count in the page's statement (a scalar subquery beside its columns, run once) rather than in a statement of its
   * own beside it: one round trip instead of two, for a count about as cheap as the page (one token's log rows). A
   * count of millions of rows is better left to its own statement, run in parallel with the page.
   */
  countWithPage?: boolean;
  /** A raw row of the page as the API shows it. */
  map(row: any): T;
}

/** The column of a page's rows that carries the count read with the page (`countWithPage`). */
const TOTAL = 'page_total_count';

/**
 * One page (newest first, one extra row to tell whether more follow) and the filter's total count, in parallel (with
 * `count` false, the total is counted only if read), or in the page's own statement (`countWithPage`). They run as the
 * listing's statements of their shape, the cursor and the page size being parameters like the filter's values.
 */
export async function keysetPage<T extends { id: string }>(
  deps: ListingDeps,
  listing: Listing<T>,
  limit: number,
  beforeId: string | null,
  count = true,
  /** Counts the filter some faster way than count(*) over `qb` (exactly the same number), when it can (else null). */
  countOtherwise?: () => Promise<number | null>,
): Promise<Page<T>> {
  const { shape, values, filtered, idColumn } = listing;
  const pageValues: ListingValues = beforeId === null ? { ...values, $limit: limit + 1 } : { ...values, $before: beforeId, $limit: limit + 1 };
  const withPage = count && !countOtherwise && listing.countWithPage === true;
  const page = () =>
    runListing<Record<string, unknown>>(deps, `${shape}|page${withPage ? '+count' : ''}`, pageValues, (em, v) => {
      const qb = filtered(em, v);
      if (v.$before !== undefined) qb.andWhere({ [idColumn]: { $lt: v.$before } });
      const order: Record<string, 'desc'> = {};
      for (const column of listing.leadingOrder ?? []) order[column] = 'desc';
      order[idColumn] = 'desc';
      qb.orderBy(order).limit(v.$limit as number);
      listing.page?.(qb);
      // The same filter, tenant included, as the count's own statement has (uncorrelated: PostgreSQL runs it once).
      if (withPage) qb.addSelect(filtered(em, v).select(raw('count(*)::int')).as(TOTAL));
      return qb;
    }, listing.outer);
  const countOf = async () => {
    const [row] = await runListing<{ n: number }>(deps, `${shape}|count`, values, (em, v) =>
      filtered(em, v).select(raw('count(*)::int as n')),
    );
    return row.n;
  };
  let counted: Promise<number> | undefined;
  const total = async () => (await countOtherwise?.()) ?? countOf();
  if (withPage) {
    const rows = await page();
    // No row carries the count when the page is empty: without a cursor the filter then matches nothing (the page
    // asks for at least one row); past the last row, it is counted on its own.
    const totalCount = rows.length > 0 ? (rows[0][TOTAL] as number) : beforeId === null ? 0 : await countOf();
    return pageOf(listing, rows, limit, beforeId, totalCount);
  }
  const [rows, totalCount] = await Promise.all([page(), count ? total() : () => (counted ??= total())]);
  return pageOf(listing, rows, limit, beforeId, totalCount);
}

function pageOf<T extends { id: string }>(
  listing: Listing<T>,
  rows: Record<string, unknown>[],
  limit: number,
  beforeId: string | null,
  totalCount: Page<T>['totalCount'],
): Page<T> {
  return {
    nodes: rows.slice(0, limit).map(listing.map),
    hasNextPage: rows.length > limit,
    hasPreviousPage: beforeId !== null,
    totalCount,
    cursorOf: (node) => encodeCursor(node.id),
  };
}
