/**
 * What both middleware adapters share: redeem the token of one request and decide what happens, record the status
 * of the response afterwards, render the default refusal. The adapters (node.ts for connect-style frameworks,
 * fetch.ts for (Request) => Response ones) only translate their request and response to and from these shapes, so a
 * new option or flow goes here once.
 */
import type { OperationResult, RequestTokenClient } from '../client.js';
import type { ErrorCode } from '../generated/graphql.js';
import { DEFAULT_TOKEN_PARAM, type TrustProxy } from '../links.js';

export type RedeemRequestTokenResult = OperationResult<'redeemRequestToken'>;
/** A successful redemption, as the handler receives it. */
export type Redemption = Extract<RedeemRequestTokenResult, { __typename: 'Redemption' }>;

/** Why a request was refused: the service's code, or TOKEN_MISSING when a required token was absent. */
export type RejectionCode = ErrorCode | 'TOKEN_MISSING';

export interface Rejection {
  code: RejectionCode;
  message: string;
  /** The HTTP status of the default answer: 403, or 400 when the service found the input invalid. */
  status: number;
  /** The log row of the refused attempt; the middleware records the refusal's status on it. */
  logId: string | null;
  /** The token concerned, when the service could tie the JWT to one. */
  tokenId: string | null;
}

/** The client calls the middleware makes; a full RequestTokenClient has them. */
export type GuardClient = Pick<RequestTokenClient, 'redeemRequestToken' | 'recordResponseStatus'>;

/** Options common to both adapters. */
export interface GuardOptions {
  /** The SDK client the middleware redeems through. */
  client: GuardClient;
  /** The scope of this endpoint; a token issued for another scope is refused (SCOPE_MISMATCH). */
  scope: string;
  /** Whether a request without a token is refused (403 TOKEN_MISSING) or served without one. */
  required: boolean;
  /** The query or body parameter that carries the token. Default: 'rt'. */
  param?: string;
  /** Which proxies may set X-Forwarded-For/-Proto/-Host. Default: false (none). */
  trustProxy?: TrustProxy;
  /**
   * The public origin of this application (e.g. 'https://app.example.com'), used to build the URL checked against
   * the token's targetUrl. Default: derived from the request (Host header, or the fetch Request's URL).
   */
  publicUrl?: string;
  /** Called when recording a response status fails; the response is never affected. Default: console.warn. */
  onRecordError?: (error: unknown) => void;
}

/** One incoming request, as the core sees it. */
export interface RequestView {
  /** The absolute URL as requested (with the token parameter; it is stripped before redeeming). */
  url: string;
  token: string | null;
  clientIp: string | null;
  userAgent: string | null;
  userId: string | null;
}

export type Verdict =
  /** No token and none required: serve the request as is. */
  | { kind: 'pass' }
  | { kind: 'redeemed'; redemption: Redemption }
  | { kind: 'rejected'; rejection: Rejection };

export function checkGuardOptions(options: GuardOptions, adapter: string): void {
  if (!options || typeof options !== 'object') throw new TypeError(`${adapter}: options are required`);
  if (!options.client) throw new TypeError(`${adapter}: \`client\` is required`);
  if (typeof options.scope !== 'string' || options.scope === '') throw new TypeError(`${adapter}: \`scope\` is required`);
  if (typeof options.required !== 'boolean') throw new TypeError(`${adapter}: \`required\` must be true or false`);
}

/** Drops the token parameter from a URL: the service ignores it, and the JWT need not travel twice. */
export function withoutToken(url: string, param: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.searchParams.has(param)) return url;
    parsed.searchParams.delete(param);
    return parsed.toString();
  } catch {
    return url;
  }
}

/** Redeems the request's token. Throws RequestTokenClientError when the service cannot be reached. */
export async function judge(options: GuardOptions, view: RequestView): Promise<Verdict> {
  if (!view.token) {
    if (!options.required) return { kind: 'pass' };
    return {
      kind: 'rejected',
      rejection: { code: 'TOKEN_MISSING', message: 'This link needs a token.', status: 403, logId: null, tokenId: null },
    };
  }
  const result = await options.client.redeemRequestToken({
    jwt: view.token,
    scope: options.scope,
    url: withoutToken(view.url, options.param ?? DEFAULT_TOKEN_PARAM),
    clientIp: view.clientIp,
    userAgent: view.userAgent,
    userId: view.userId,
  });
  switch (result.__typename) {
    case 'Redemption':
      return { kind: 'redeemed', redemption: result };
    case 'TokenRejectedError':
      return {
        kind: 'rejected',
        rejection: { code: result.code, message: result.message, status: 403, logId: result.logId, tokenId: result.tokenId },
      };
    case 'ValidationError':
      return {
        kind: 'rejected',
        rejection: { code: result.code, message: result.message, status: 400, logId: null, tokenId: null },
      };
  }
}

const warn = (error: unknown) => console.warn('request-token: could not record the response status:', error);

/** Records a response's status on a log row. Never rejects: a failure goes to onRecordError. */
export async function recordStatus(options: GuardOptions, logId: string, statusCode: number): Promise<void> {
  const report = options.onRecordError ?? warn;
  try {
    const result = await options.client.recordResponseStatus({ redemptionId: logId, statusCode });
    if (result.__typename !== 'RecordResponseStatusSuccess') report(new Error(`${result.code}: ${result.message}`));
  } catch (error) {
    try {
      report(error);
    } catch {
      // A throwing reporter must not become an unhandled rejection.
    }
  }
}

/** A framework-neutral answer the adapters write out. */
export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The default refusal: JSON with the code, never cached. */
export function rejectionReply(rejection: Rejection): Reply {
  return {
    status: rejection.status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
    body: JSON.stringify({ error: { code: rejection.code, message: rejection.message } }),
  };
}

/** The first value of a possibly repeated, comma-separated header. */
export function firstHeaderValue(value: string | string[] | null | undefined): string | null {
  const raw = Array.isArray(value) ? value[0] : value;
  const first = raw?.split(',')[0]?.trim();
  return first ? first : null;
}
