import type pg from 'pg';
import type { Issues } from './errors.js';

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

export interface PageArgs {
  first?: number | null;
  after?: string | null;
}

export interface Page<T> {
  nodes: T[];
  hasNextPage: boolean;
  hasPreviousPage: boolean;
  totalCount: number;
  cursorOf(node: T): string;
}

/** Cursors are opaque: base64url of the row id. Pages run newest first (id descending). */
export const encodeCursor = (id: string) => Buffer.from(`id:${id}`).toString('base64url');

export function decodeCursor(cursor: string): string | null {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const match = /^id:(\d{1,19})$/.exec(text);
  return match ? match[1] : null;
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

export interface KeysetQuery<T> {
  /** `from` clause: the table with its alias and any joins the conditions need. */
  from: string;
  /** The select list of a page row. */
  columns: string;
  /** The id column pages are cut on, newest first. */
  idColumn: string;
  /** Filter conditions with $n placeholders numbered into `values`; the page and the count share them. */
  where: string[];
  values: unknown[];
  limit: number;
  beforeId: string | null;
  map(row: Record<string, any>): T & { id: string };
}

/** One page (newest first, one extra row to tell whether more follow) and the filter's total count, in parallel. */
export async function keysetPage<T>(pool: pg.Pool, q: KeysetQuery<T>): Promise<Page<T & { id: string }>> {
  const values = [...q.values];
  const param = (v: unknown) => `$${values.push(v)}`;
  const pageWhere = q.beforeId ? [...q.where, `${q.idColumn} < ${param(q.beforeId)}`] : q.where;
  const clause = (conditions: string[]) => (conditions.length ? `where ${conditions.join(' and ')}` : '');
  const [page, count] = await Promise.all([
    pool.query(
      `select ${q.columns} from ${q.from} ${clause(pageWhere)} order by ${q.idColumn} desc limit ${param(q.limit + 1)}`,
      values,
    ),
    pool.query(`select count(*)::int as n from ${q.from} ${clause(q.where)}`, q.values),
  ]);
  return {
    nodes: page.rows.slice(0, q.limit).map(q.map),
    hasNextPage: page.rows.length > q.limit,
    hasPreviousPage: q.beforeId !== null,
    totalCount: count.rows[0].n,
    cursorOf: (node) => encodeCursor(node.id),
  };
}
