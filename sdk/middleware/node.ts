/**
 * The connect-style middleware, for node:http-compatible frameworks: Express, Connect, Fastify (through
 * @fastify/middie), or a plain http.createServer handler. It needs no framework at run time.
 *
 *     app.get('/unsubscribe', requestToken({ client: rt, scope: 'unsubscribe', required: true }), (req, res) => …)
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { clientIp, extractToken, isTrustedPeer } from '../links.js';
import {
  checkGuardOptions,
  firstHeaderValue,
  isCrossSite,
  judge,
  recordStatus,
  rejectionReply,
  type GuardOptions,
  type Redemption,
  type Rejection,
} from './core.js';

declare module 'http' {
  interface IncomingMessage {
    /** The redemption of this request's token, set by the requestToken middleware (undefined without a token). */
    requestToken?: Redemption;
  }
}

export type NextFunction = (error?: unknown) => void;

export interface RequestTokenMiddlewareOptions<
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
> extends GuardOptions {
  /** The user signed in at this application, if any; the service refuses a token issued to someone else. */
  getUserId?: (req: Req) => string | null | undefined | Promise<string | null | undefined>;
  /** Called for a SESSION token before the handler runs: sign `userId` in (e.g. regenerate the session). */
  login?: (userId: string, context: { redemption: Redemption; req: Req; res: Res }) => void | Promise<void>;
  /** Renders a refusal (e.g. a friendly page). Default: the status with `{ error: { code, message } }` as JSON. */
  onRejected?: (rejection: Rejection, req: Req, res: Res) => void | Promise<void>;
}

/** The URL the browser asked for, absolute, as the token's targetUrl would name it. */
function requestUrl(req: IncomingMessage & { originalUrl?: string }, options: GuardOptions): string {
  const path = req.originalUrl ?? req.url ?? '/';
  if (options.publicUrl) return new URL(path, options.publicUrl).toString();
  // Forwarded scheme and host count only when the peer is a proxy we trust, as for the client address.
  const trusted = isTrustedPeer(req.socket?.remoteAddress, options.trustProxy);
  const encrypted = (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true;
  const proto = (trusted && firstHeaderValue(req.headers['x-forwarded-proto'])) || (encrypted ? 'https' : 'http');
  const host = (trusted && firstHeaderValue(req.headers['x-forwarded-host'])) || req.headers.host || 'localhost';
  return `${proto}://${host}${path}`;
}

function writeReply(res: ServerResponse, reply: { status: number; headers: Record<string, string>; body: string }) {
  res.statusCode = reply.status;
  for (const [name, value] of Object.entries(reply.headers)) res.setHeader(name, value);
  res.end(reply.body);
}

/** Records the response's status on `logId` once it has been sent (or the connection closed after the headers). */
function recordWhenSent(res: ServerResponse, options: GuardOptions, logId: string, redeemed = false) {
  let done = false;
  const record = () => {
    if (done || !res.headersSent) return;
    done = true;
    void recordStatus(options, logId, res.statusCode, { redeemed });
  };
  res.once('finish', record);
  res.once('close', record);
}

/**
 * Protects a route the way django-request-token's decorator protects a view: extracts the token, redeems it for this
 * scope with the URL, client IP, user agent and signed-in user, then either runs the handler with `req.requestToken`
 * set or answers the refusal (403 and its code). The response's status is recorded afterwards, without delaying it.
 * If the service cannot be reached, the error goes to `next(error)`.
 */
export function requestToken<Req extends IncomingMessage = IncomingMessage, Res extends ServerResponse = ServerResponse>(
  options: RequestTokenMiddlewareOptions<Req, Res>,
): (req: Req, res: Res, next: NextFunction) => void {
  checkGuardOptions(options, 'requestToken');
  return (req, res, next) => {
    void (async () => {
      const token = await extractToken(req, { param: options.param });
      const userId = token && options.getUserId ? ((await options.getUserId(req)) ?? null) : null;
      const url = requestUrl(req, options);
      const verdict = await judge(options, {
        method: req.method ?? 'GET',
        url,
        path: (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/',
        token,
        clientIp: clientIp(req, { trustProxy: options.trustProxy }),
        userAgent: req.headers['user-agent'] ?? null,
        userId,
        crossSite: isCrossSite(firstHeaderValue(req.headers['sec-fetch-site']), firstHeaderValue(req.headers.origin), url),
      });
      if (verdict.kind === 'pass') return next();
      if (verdict.kind === 'options' || verdict.kind === 'inspected') return writeReply(res, verdict.reply);
      if (verdict.kind === 'rejected') {
        const { rejection } = verdict;
        if (rejection.logId) recordWhenSent(res, options, rejection.logId);
        if (options.onRejected) await options.onRejected(rejection, req, res);
        else writeReply(res, rejectionReply(rejection));
        return;
      }
      const { redemption } = verdict;
      recordWhenSent(res, options, redemption.id, true);
      req.requestToken = redemption;
      const locals = (res as { locals?: Record<string, unknown> }).locals;
      if (locals) locals.requestToken = redemption;
      if (redemption.loginMode === 'SESSION' && redemption.authenticateAs && options.login) {
        await options.login(redemption.authenticateAs, { redemption, req, res });
      }
      next();
    })().catch(next);
  };
}
