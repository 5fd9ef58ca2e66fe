/**
 * Why a call to the service failed at the transport level. Expected outcomes (a refused token, a validation error) are
 * never thrown: they come back as members of the operation's result union.
 */
export type RequestTokenClientErrorKind =
  /** The request failed before a response arrived (connection refused or reset, DNS failure…). */
  | 'network'
  /** No response within the client's `timeoutMs`. */
  | 'timeout'
  /** The caller's own AbortSignal fired. */
  | 'aborted'
  /** HTTP 401: missing, invalid, expired or revoked API key. */
  | 'unauthorized'
  /** HTTP 403: the API key may not run this operation. */
  | 'forbidden'
  /** HTTP 5xx, or a masked internal error. */
  | 'server'
  /** The service answered with GraphQL errors (an invalid document, a field that failed). */
  | 'graphql'
  /** Any other non-2xx answer (404, 429…) or a body that is not a GraphQL response. */
  | 'http';

export interface RequestTokenClientGraphQLError {
  message: string;
  path?: readonly (string | number)[];
  extensions?: Record<string, unknown>;
}

// A brand rather than `instanceof` alone, so the guard still works when two copies of the SDK are loaded.
const BRAND = Symbol.for('request-token.RequestTokenClientError');

/** The one error the client throws. Its message never contains the variables (they may hold a JWT). */
export class RequestTokenClientError extends Error {
  readonly [BRAND] = true;
  override readonly name = 'RequestTokenClientError';
  readonly kind: RequestTokenClientErrorKind;
  /** The operation that failed, e.g. "RedeemRequestToken". */
  readonly operationName: string | undefined;
  /** HTTP status, when a response arrived. */
  readonly status: number | undefined;
  /** GraphQL errors from the response, if any. */
  readonly errors: readonly RequestTokenClientGraphQLError[];
  /** How many attempts were made (1 + retries). */
  readonly attempts: number;

  constructor(
    kind: RequestTokenClientErrorKind,
    message: string,
    details: {
      operationName?: string;
      status?: number;
      errors?: readonly RequestTokenClientGraphQLError[];
      attempts?: number;
      cause?: unknown;
    } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.kind = kind;
    this.operationName = details.operationName;
    this.status = details.status;
    this.errors = details.errors ?? [];
    this.attempts = details.attempts ?? 1;
  }
}

/** Type guard for errors thrown by the SDK client. */
export function isRequestTokenClientError(error: unknown): error is RequestTokenClientError {
  return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[BRAND] === true;
}
