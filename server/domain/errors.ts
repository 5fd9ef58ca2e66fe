import { CHECK_MESSAGES } from './redemption-rules.js';

/** Codes of expected failures; the GraphQL enum ErrorCode mirrors this list. */
export const ERROR_CODES = [
  'VALIDATION_FAILED',
  'NOT_FOUND',
  'TOKEN_MALFORMED',
  'TOKEN_SIGNATURE_INVALID',
  'TOKEN_EXPIRED',
  'TOKEN_NOT_YET_VALID',
  'TOKEN_NOT_FOUND',
  'TOKEN_REVOKED',
  'SCOPE_MISMATCH',
  'TARGET_URL_MISMATCH',
  'AUDIENCE_MISMATCH',
  'MAX_USES_EXCEEDED',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export type RejectionCode = Exclude<ErrorCode, 'VALIDATION_FAILED' | 'NOT_FOUND'>;

/**
 * Base class of every expected failure. The schema turns these (and only these) into members of result unions;
 * anything else thrown is a bug, logged and masked.
 */
export abstract class RequestTokenError extends Error {
  abstract readonly code: ErrorCode;

  // Expected outcomes carry no stack trace: a refusal is not a bug, and formatting a stack (through source maps when
  // run by tsx) cost more than the rest of a refused redemption.
  constructor(message: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
  }
}

export interface ValidationIssue {
  path: string[];
  message: string;
}

export class ValidationError extends RequestTokenError {
  readonly code = 'VALIDATION_FAILED' as const;
  constructor(readonly issues: ValidationIssue[]) {
    super(`Invalid input: ${issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    this.name = 'ValidationError';
  }
}

export class NotFoundError extends RequestTokenError {
  readonly code = 'NOT_FOUND' as const;
  constructor(what: string) {
    super(`${what} not found`);
    this.name = 'NotFoundError';
  }
}

// The checks' messages live with the checks (server/domain/redemption-rules.ts); these two refusals come before any
// check, from the JWT itself.
const REJECTION_MESSAGES = {
  TOKEN_MALFORMED: 'The token is not a well-formed JWT.',
  TOKEN_SIGNATURE_INVALID: 'The token signature or algorithm is not valid.',
  ...CHECK_MESSAGES,
} as Record<RejectionCode, string>;
for (const code of ERROR_CODES) {
  if (code !== 'VALIDATION_FAILED' && code !== 'NOT_FOUND' && !REJECTION_MESSAGES[code]) {
    throw new Error(`refusal ${code} has no message`);
  }
}

/** The message of a refusal with this code. */
export const rejectionMessage = (code: RejectionCode): string => REJECTION_MESSAGES[code];

/**
 * A redemption was refused; nothing was consumed. `logId` is the log row of the attempt (null while a malformed or
 * badly signed attempt waits for the batched log writer).
 *
 * An answer, not an exception: `redeemToken` returns it and GraphQL answers it as the `TokenRejectedError` member of
 * the result union. It is deliberately not an `Error`: graphql-js takes a returned `Error` for a field error, which is
 * why the Pothos errors plugin hands thrown errors over as proxies, and reading a refusal through those proxies was
 * about a tenth of its CPU time (docs/hot-path.md).
 */
export class TokenRejection {
  readonly message: string;
  constructor(
    readonly code: RejectionCode,
    readonly tokenId: string | null,
    readonly logId: string | null,
  ) {
    this.message = REJECTION_MESSAGES[code];
  }
}

/** Collects validation issues so that one error lists every offending field. */
export class Issues {
  readonly list: ValidationIssue[] = [];
  add(path: string[], message: string): void {
    this.list.push({ path, message });
  }
  throwIfAny(): void {
    if (this.list.length > 0) throw new ValidationError(this.list);
  }
}

/** A pasted JWT that is not ours: not a JWT at all, or not signed with our secret. Nothing is logged. */
export class InvalidJwtError extends RequestTokenError {
  constructor(readonly code: 'TOKEN_MALFORMED' | 'TOKEN_SIGNATURE_INVALID') {
    super(REJECTION_MESSAGES[code]);
    this.name = 'InvalidJwtError';
  }
}
