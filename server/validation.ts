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
