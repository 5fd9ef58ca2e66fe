import type { Issues } from './errors.js';

export const MAX_USER_ID_LENGTH = 255;
export const MAX_USER_AGENT_LENGTH = 512;

/** Checks a string's length and that it carries no NUL byte (PostgreSQL rejects those in text). */
export function checkString(
  issues: Issues,
  path: string[],
  value: unknown,
  { min = 0, max }: { min?: number; max: number },
): void {
  if (typeof value !== 'string') {
    issues.add(path, 'must be a string');
  } else if (value.length < min || value.length > max) {
    issues.add(path, min > 0 ? `must be ${min}–${max} characters long` : `must be at most ${max} characters long`);
  } else if (value.includes('\u0000')) {
    issues.add(path, 'must not contain NUL characters');
  }
}

export const MAX_JSON_DEPTH = 16;

/**
 * A JSON value that PostgreSQL's jsonb accepts and that cannot exhaust the stack: no NUL in any string or key, at most
 * MAX_JSON_DEPTH levels of nesting.
 */
export function checkJsonValue(issues: Issues, path: string[], value: unknown): void {
  const walk = (v: unknown, depth: number): string | null => {
    if (depth > MAX_JSON_DEPTH) return `must be nested at most ${MAX_JSON_DEPTH} levels deep`;
    if (typeof v === 'string') return v.includes('\u0000') ? 'must not contain NUL characters' : null;
    if (typeof v === 'number') return Number.isFinite(v) ? null : 'must hold finite numbers only';
    if (v === null || typeof v === 'boolean') return null;
    if (Array.isArray(v)) {
      for (const item of v) {
        const problem = walk(item, depth + 1);
        if (problem) return problem;
      }
      return null;
    }
    if (typeof v === 'object') {
      for (const [key, item] of Object.entries(v as Record<string, unknown>)) {
        if (key.includes('\u0000')) return 'must not contain NUL characters';
        const problem = walk(item, depth + 1);
        if (problem) return problem;
      }
      return null;
    }
    return 'must be JSON';
  };
  const problem = walk(value, 1);
  if (problem) issues.add(path, problem);
}
