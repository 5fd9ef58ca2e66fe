import { raw } from '@mikro-orm/core';
import type { QueryBuilder } from '@mikro-orm/postgresql';
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
export const encodeCursor = (id: string) => Buffer.from(`id:${id}`).toString('base64url');

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

/**
 * One page (newest first, one extra row to tell whether more follow) and the filter's total count, in parallel (with
 * `count` false, the total is counted only if read). `qb` holds the filter (the tenant's included); the page adds the
 * cursor, the order and the limit to a copy of it.
 */
export async function keysetPage<T extends { id: string }>(
  qb: QueryBuilder<any, any>,
  idColumn: string,
  limit: number,
  beforeId: string | null,
  read: (qb: any) => Promise<T[]>,
  count = true,
  /** Counts the filter some faster way than count(*) over `qb` (exactly the same number), when it can (else null). */
  countOtherwise?: () => Promise<number | null>,
): Promise<Page<T>> {
  const page = qb.clone();
  if (beforeId !== null) page.andWhere({ [idColumn]: { $lt: beforeId } });
  page.orderBy({ [idColumn]: 'desc' }).limit(limit + 1);
  let counted: Promise<number> | undefined;
  const total = async () => (await countOtherwise?.()) ?? countOf(qb);
  const [rows, totalCount] = await Promise.all([read(page), count ? total() : () => (counted ??= total())]);
  return {
    nodes: rows.slice(0, limit),
    hasNextPage: rows.length > limit,
    hasPreviousPage: beforeId !== null,
    totalCount,
    cursorOf: (node) => encodeCursor(node.id),
  };
}

async function countOf(qb: QueryBuilder<any, any>): Promise<number> {
  const [row] = await qb.clone().select(raw('count(*)::int as n')).execute<{ n: number }[]>('all', false);
  return row.n;
}
