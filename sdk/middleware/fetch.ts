/**
 * The fetch-API wrapper, for frameworks whose handlers are (Request) => Response: Hono (`c.req.raw`), Next.js route
 * handlers, Bun.serve, Deno.serve.
 *
 *     export const GET = withRequestToken(async (request, { redemption }) => new Response('bye'), {
 *       client: rt, scope: 'unsubscribe', required: true,
 *     })
 */
import { clientIp, extractToken } from '../links.js';
import {
  checkGuardOptions,
  isCrossSite,
  judge,
  recordStatus,
  rejectionReply,
  type GuardOptions,
  type Redemption,
  type Rejection,
} from './core.js';

/** What the wrapped handler receives next to the Request. `redemption` is never null when the token is required. */
export interface RequestTokenContext<Required extends boolean> {
  redemption: Required extends true ? Redemption : Redemption | null;
}

export interface WithRequestTokenOptions<Required extends boolean, Args extends unknown[] = []> extends GuardOptions {
  required: Required;
  /** The user signed in at this application, if any; the service refuses a token issued to someone else. */
  getUserId?: (request: Request, ...args: Args) => string | null | undefined | Promise<string | null | undefined>;
  /**
   * The client's address. Default: from X-Forwarded-For through `trustProxy` hops; a fetch Request has no socket,
   * so pass the runtime's own (Bun's `server.requestIP(request)?.address`, Deno's `info.remoteAddr.hostname`).
   */
  getClientIp?: (request: Request, ...args: Args) => string | null | undefined;
  /**
   * Called for a SESSION token before the handler runs. Headers it returns (e.g. a Set-Cookie) are added to the
   * handler's response.
   */
  login?: (
    userId: string,
    context: { redemption: Redemption; request: Request; args: Args },
  ) => void | HeadersInit | Promise<void | HeadersInit>;
  /** Renders a refusal. Default: the status with `{ error: { code, message } }` as JSON. */
  onRejected?: (rejection: Rejection, request: Request, ...args: Args) => Response | Promise<Response>;
  /**
   * Keeps the status recording alive after the response is returned, on platforms that end work with the response
   * (Cloudflare's and Vercel's `waitUntil`). Default: none; the recording runs in the background.
   */
  waitUntil?: (promise: Promise<unknown>) => void;
}

export type RequestTokenHandler<Required extends boolean, Args extends unknown[]> = (
  request: Request,
  context: RequestTokenContext<Required>,
  ...args: Args
) => Response | Promise<Response>;

function withHeaders(response: Response, extra: HeadersInit): Response {
  // Responses from fetch() or Response.redirect() have immutable headers: copy once, then add.
  const copy = new Response(response.body, response);
  new Headers(extra).forEach((value, name) => copy.headers.append(name, value));
  return copy;
}

/**
 * Wraps a (Request, ...args) => Response handler: redeems the request's token for this scope and runs the handler
 * with the Redemption, or answers the refusal (403 and its code). The response's status is recorded in the background.
 * If the service cannot be reached, the RequestTokenClientError is thrown to the framework.
 */
export function withRequestToken<Required extends boolean, Args extends unknown[] = []>(
  handler: RequestTokenHandler<Required, Args>,
  options: WithRequestTokenOptions<Required, Args>,
): (request: Request, ...args: Args) => Promise<Response> {
  checkGuardOptions(options, 'withRequestToken');
  const record = (logId: string, status: number, redeemed = false) => {
    const recording = recordStatus(options, logId, status, { redeemed });
    options.waitUntil?.(recording);
  };
  return async (request, ...args) => {
    const token = await extractToken(request, { param: options.param });
    const userId = token && options.getUserId ? ((await options.getUserId(request, ...args)) ?? null) : null;
    const requested = new URL(request.url);
    const url = options.publicUrl
      ? new URL(requested.pathname + requested.search, options.publicUrl).toString()
      : request.url;
    const verdict = await judge(options, {
      method: request.method,
      url,
      path: requested.pathname + requested.search,
      token,
      clientIp: options.getClientIp
        ? (options.getClientIp(request, ...args) ?? null)
        : clientIp(request, { trustProxy: options.trustProxy }),
      userAgent: request.headers.get('user-agent'),
      userId,
      crossSite: isCrossSite(request.headers.get('sec-fetch-site'), request.headers.get('origin'), url),
    });
    if (verdict.kind === 'options' || verdict.kind === 'inspected') {
      const { reply } = verdict;
      return new Response(request.method === 'HEAD' || reply.status === 204 ? null : reply.body, {
        status: reply.status,
        headers: reply.headers,
      });
    }
    if (verdict.kind === 'rejected') {
      const { rejection } = verdict;
      let response: Response;
      if (options.onRejected) {
        response = await options.onRejected(rejection, request, ...args);
      } else {
        const reply = rejectionReply(rejection);
        response = new Response(reply.body, { status: reply.status, headers: reply.headers });
      }
      if (rejection.logId) record(rejection.logId, response.status);
      return response;
    }
    const redemption = verdict.kind === 'redeemed' ? verdict.redemption : null;
    let loginHeaders: HeadersInit | void = undefined;
    if (redemption?.loginMode === 'SESSION' && redemption.authenticateAs && options.login) {
      loginHeaders = await options.login(redemption.authenticateAs, { redemption, request, args });
    }
    let response: Response;
    try {
      response = await handler(request, { redemption } as RequestTokenContext<Required>, ...args);
    } catch (error) {
      // The handler failed: the framework answers 500, so that is the status to record.
      if (redemption) record(redemption.id, 500, true);
      throw error;
    }
    if (loginHeaders) response = withHeaders(response, loginHeaders);
    if (redemption) record(redemption.id, response.status, true);
    return response;
  };
}
