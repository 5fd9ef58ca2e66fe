import { Issues } from './errors.js';

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
