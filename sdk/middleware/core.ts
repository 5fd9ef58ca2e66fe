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
export type GuardClient = Pick<RequestTokenClient, 'redeemRequestToken' | 'recordResponseStatus' | 'inspectRequestToken'>;

export type InspectRequestTokenResult = OperationResult<'inspectRequestToken'>;
/** What the service says about a token without consuming it. */
export type Inspection = Extract<InspectRequestTokenResult, { __typename: 'Inspection' }>;

/** What a confirmation page is rendered from. */
export interface ConfirmationView {
  /** Where the page's form must POST to: this request's path and query (the token included), relative. */
  action: string;
  /** The token as the service sees it: uses left, its data, its status. */
  inspection: Inspection;
}

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
  /**
   * Scanner-safe links: a GET (or HEAD) only inspects the token and answers a confirmation page whose button POSTs
   * back; only the POST redeems. Email security scanners that open (and even script) every link then consume
   * nothing. Default: false (a GET redeems). HEAD and OPTIONS never redeem, with or without it.
   */
  confirm?: boolean;
  /** Renders the confirmation page (HTML). Default: a plain page with one button; no script, no redirect. */
  renderConfirmation?: (view: ConfirmationView) => string | Promise<string>;
  /**
   * Give the use back to the token when the handler answers 5xx (or throws): the request was not served, so the link
   * should still work. Default: true.
   */
  releaseOnServerError?: boolean;
}

/** One incoming request, as the core sees it. */
export interface RequestView {
  /** The HTTP method: HEAD and OPTIONS never redeem; with `confirm`, neither does GET. */
  method: string;
  /** The absolute URL as requested (with the token parameter; it is stripped before redeeming). */
  url: string;
  /** The path and query as requested, for the confirmation form's action. */
  path: string;
  token: string | null;
  clientIp: string | null;
  userAgent: string | null;
  userId: string | null;
  /**
   * The browser says the request comes from another site (see `isCrossSite`): a POST from another site may not log
   * anyone in without a confirmation.
   */
  crossSite?: boolean;
}

/**
 * Whether a browser sent the request from another site: `Sec-Fetch-Site: cross-site`, or, from browsers without
 * Fetch Metadata, an Origin header (sent with every POST) of another site than the requested URL's ("null" included).
 * Requests without either (servers, mail providers' one-click unsubscribe, curl) are not cross-site.
 */
export function isCrossSite(secFetchSite: string | null | undefined, origin: string | null | undefined, url: string): boolean {
  if (secFetchSite) return secFetchSite.trim().toLowerCase() === 'cross-site';
  if (!origin) return false;
  try {
    return new URL(origin).origin !== new URL(url).origin;
  } catch {
    return true;
  }
}

export type Verdict =
  /** No token and none required: serve the request as is. */
  | { kind: 'pass' }
  /** OPTIONS: answered by the middleware, nothing looked at. */
  | { kind: 'options'; reply: Reply }
  /** HEAD, or GET with `confirm`: the token was only inspected; the reply is the confirmation page (or its head). */
  | { kind: 'inspected'; reply: Reply }
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

const ALLOW = 'GET, HEAD, POST, OPTIONS';

/**
 * Decides what a request gets: OPTIONS an Allow answer; HEAD (and GET with `confirm`) an inspection, never a
 * redemption; a cross-site POST of a SESSION token the confirmation page; anything else a redemption. Throws RequestTokenClientError when the service cannot be reached.
 */
export async function judge(options: GuardOptions, view: RequestView): Promise<Verdict> {
  const method = view.method.toUpperCase();
  if (method === 'OPTIONS') {
    return { kind: 'options', reply: { status: 204, headers: { allow: ALLOW, 'cache-control': 'no-store' }, body: '' } };
  }
  if (!view.token) {
    if (!options.required) return { kind: 'pass' };
    return {
      kind: 'rejected',
      rejection: { code: 'TOKEN_MISSING', message: 'This link needs a token.', status: 403, logId: null, tokenId: null },
    };
  }
  const url = withoutToken(view.url, options.param ?? DEFAULT_TOKEN_PARAM);
  // A cross-site POST redeems links that log no one in (one-click unsubscribe), but a SESSION link gets the
  // confirmation page instead, whose button POSTs from this site: else any site could sign a visitor's browser into
  // the account of a SESSION link of the attacker's own (login CSRF).
  const crossSitePost = method === 'POST' && view.crossSite === true;
  if (method === 'HEAD' || (method === 'GET' && options.confirm) || crossSitePost) {
    const inspected = await options.client.inspectRequestToken({
      jwt: view.token,
      scope: options.scope,
      url,
      userId: view.userId,
    });
    if (inspected.__typename === 'ValidationError') {
      return {
        kind: 'rejected',
        rejection: { code: inspected.code, message: inspected.message, status: 400, logId: null, tokenId: null },
      };
    }
    if (!inspected.redeemable) {
      const code = inspected.rejectionCode!;
      const message = inspected.rejectionMessage ?? code;
      return {
        kind: 'rejected',
        rejection: { code, message, status: 403, logId: null, tokenId: inspected.token?.id ?? null },
      };
    }
    const confirmSession = crossSitePost && inspected.token?.loginMode === 'SESSION';
    if (!crossSitePost || confirmSession) {
      const render = options.renderConfirmation ?? defaultConfirmationPage;
      const html = options.confirm || confirmSession ? await render({ action: view.path, inspection: inspected }) : '';
      return { kind: 'inspected', reply: { status: 200, headers: PAGE_HEADERS, body: html } };
    }
  }
  const result = await options.client.redeemRequestToken({
    jwt: view.token,
    scope: options.scope,
    url,
    clientIp: view.clientIp,
    userAgent: view.userAgent,
    userId: view.userId,
    // One key per incoming request: the client's own retries (network errors, 503s) then never consume twice.
    idempotencyKey: globalThis.crypto.randomUUID(),
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

/**
 * Records a response's status on a log row; for a redemption answered with 5xx, also gives its use back (unless
 * `releaseOnServerError: false`). Never rejects: a failure goes to onRecordError.
 */
export async function recordStatus(
  options: GuardOptions,
  logId: string,
  statusCode: number,
  { redeemed = false }: { redeemed?: boolean } = {},
): Promise<void> {
  const report = options.onRecordError ?? warn;
  const releaseUse = redeemed && statusCode >= 500 && statusCode <= 599 && options.releaseOnServerError !== false;
  try {
    const result = await options.client.recordResponseStatus({ redemptionId: logId, statusCode, releaseUse });
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

/**
 * The default refusal, never cached: a short page saying why the link does not work for a browser (a request whose
 * Accept header asks for text/html before JSON), JSON with the code for anything else.
 */
export function rejectionReply(rejection: Rejection, accept?: string | null): Reply {
  if (prefersHtml(accept)) {
    return { status: rejection.status, headers: PAGE_HEADERS, body: defaultRejectionPage(rejection) };
  }
  return {
    status: rejection.status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
    body: JSON.stringify({ error: { code: rejection.code, message: rejection.message } }),
  };
}

/** Whether an Accept header asks for HTML ahead of JSON, as browsers' navigations do. */
export function prefersHtml(accept: string | null | undefined): boolean {
  const types = (accept ?? '').toLowerCase().split(',').map((part) => part.split(';')[0].trim());
  const html = types.findIndex((t) => t === 'text/html' || t === 'application/xhtml+xml');
  const json = types.findIndex((t) => t === 'application/json' || t.endsWith('+json'));
  return html >= 0 && (json < 0 || html < json);
}

/** What a reader is told, per refusal code: a headline and one sentence. */
const REFUSALS: Partial<Record<RejectionCode, [string, string]>> = {
  MAX_USES_EXCEEDED: [
    'This link has already been used',
    'It could be used a limited number of times and has no uses left. If that was not you, ask for a new link.',
  ],
  TOKEN_EXPIRED: ['This link has expired', 'Links like this one work for a limited time. Please ask for a new one.'],
  TOKEN_NOT_YET_VALID: ['This link is not active yet', 'Please try again later.'],
  TOKEN_REVOKED: ['This link has been cancelled', 'It no longer works. Please ask for a new one if you still need it.'],
  TOKEN_MISSING: ['This page needs a link', 'Open it from the link you were sent.'],
  AUDIENCE_MISMATCH: [
    'This link was made for someone else',
    'You are signed in as another person than the one it was sent to.',
  ],
  SCOPE_MISMATCH: ['This link does not belong here', 'It was made for another page.'],
  TARGET_URL_MISMATCH: ['This link does not belong here', 'It was made for another page.'],
};
const NOT_VALID: [string, string] = [
  'This link is not valid',
  'It may have been cut short when it was copied. Try opening it again from the message you received.',
];

/** The default refusal page for browsers: the reason in plain words, the code for whoever helps the reader. */
export function defaultRejectionPage(rejection: Pick<Rejection, 'code'>): string {
  const [headline, sentence] = REFUSALS[rejection.code] ?? NOT_VALID;
  return htmlPage(
    headline,
    'body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}small{color:#666}',
    `<h1>${escapeHtml(headline)}</h1>
<p>${escapeHtml(sentence)}</p>
<p><small>Reason: ${escapeHtml(rejection.code)}</small></p>`,
  );
}

/** A page of the middleware's own: no script, not indexed, one inline style sheet. */
function htmlPage(title: string, style: string, main: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title>
<style>${style}</style>
</head>
<body>
<main>
${main}
</main>
</body>
</html>
`;
}

const PAGE_HEADERS: Record<string, string> = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'x-robots-tag': 'noindex',
  // No script can run on the confirmation or refusal page, whatever a custom renderer puts there: a scripting scanner
  // finds nothing to click.
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
};

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/**
 * The default confirmation page: one form that POSTs back to the same URL. It neither submits itself nor redirects:
 * no script, no meta refresh, so only a person pressing the button redeems the link.
 */
export function defaultConfirmationPage({ action, inspection }: ConfirmationView): string {
  const left = inspection.usesRemaining;
  const note = left === null || left === undefined ? '' : `<p>This link can be used ${left} more time${left === 1 ? '' : 's'}.</p>`;
  return htmlPage(
    'Please confirm',
    'body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}button{font-size:1.1rem;padding:.6rem 1.4rem}',
    `<h1>Please confirm</h1>
<p>Press the button to continue.</p>
${note}
<form method="post" action="${escapeHtml(action)}">
<button type="submit">Continue</button>
</form>`,
  );
}

/** The first value of a possibly repeated, comma-separated header. */
export function firstHeaderValue(value: string | string[] | null | undefined): string | null {
  const raw = Array.isArray(value) ? value[0] : value;
  const first = raw?.split(',')[0]?.trim();
  return first ? first : null;
}
