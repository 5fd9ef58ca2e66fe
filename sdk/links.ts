import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';

/** The query parameter that carries the JWT in a link, as the service sets it. */
export const DEFAULT_TOKEN_PARAM = 'rt';

/** Largest request body extractToken reads looking for a token. */
const MAX_BODY_BYTES = 64 * 1024;

/** A query string's name, decoded as a form does; the raw text when it is no valid encoding. */
function queryName(part: string): string {
  const raw = part.split('=', 1)[0].replace(/\+/g, ' ');
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * Adds the JWT to a URL as a query parameter (replacing one already there), keeping everything else as written: the
 * other parameters (blank ones too, `?a=&b`), the fragment and the host's case. Absolute URLs and paths alike
 * (`/foo?bar=baz`, as django-request-token's `tokenise` takes them): the URL is not parsed, only its query edited.
 */
export function tokenise(url: string, jwt: string, { param = DEFAULT_TOKEN_PARAM }: { param?: string } = {}): string {
  const hash = url.indexOf('#');
  const fragment = hash === -1 ? '' : url.slice(hash);
  const beforeHash = hash === -1 ? url : url.slice(0, hash);
  const mark = beforeHash.indexOf('?');
  const base = mark === -1 ? beforeHash : beforeHash.slice(0, mark);
  const query = mark === -1 ? '' : beforeHash.slice(mark + 1);
  const parts = query === '' ? [] : query.split('&');
  // A query ending in `&` gets the token in that place rather than after an empty field.
  if (parts.at(-1) === '') parts.pop();
  const pair = `${encodeURIComponent(param)}=${encodeURIComponent(jwt)}`;
  // The token takes the place of the first old one; any other old ones go.
  let placed = false;
  const kept: string[] = [];
  for (const part of parts) {
    if (part === '' || queryName(part) !== param) kept.push(part);
    else if (!placed) {
      kept.push(pair);
      placed = true;
    }
  }
  if (!placed) kept.push(pair);
  return `${base}?${kept.join('&')}${fragment}`;
}

/** The parts of a node:http request (Express, Connect, Fastify's raw request…) the helpers read. */
export type NodeRequestLike = Pick<IncomingMessage, 'headers' | 'method' | 'url'> & {
  socket?: { remoteAddress?: string | undefined } | null;
  /** Express's path before any mount point stripped it. */
  originalUrl?: string;
  /** A body already parsed by a body parser (express.json(), express.urlencoded()…). */
  body?: unknown;
  on?: IncomingMessage['on'];
  readable?: boolean;
};

function isFetchRequest(request: unknown): request is Request {
  return typeof Request !== 'undefined' && request instanceof Request;
}

function tokenFromBody(body: unknown, contentType: string, param: string): string | null {
  if (body === null || body === undefined) return null;
  const text =
    typeof body === 'string' ? body : body instanceof Uint8Array ? new TextDecoder().decode(body) : null;
  if (text === null) {
    if (typeof body !== 'object') return null;
    const value = (body as Record<string, unknown>)[param];
    return typeof value === 'string' && value !== '' ? value : null;
  }
  if (contentType.includes('json')) {
    try {
      const parsed: unknown = JSON.parse(text);
      return typeof parsed === 'object' ? tokenFromBody(parsed, '', param) : null;
    } catch {
      return null;
    }
  }
  if (contentType.includes('application/x-www-form-urlencoded')) {
    return new URLSearchParams(text).get(param) || null;
  }
  return null;
}

const hasTokenBody = (method: string | undefined, contentType: string) =>
  method !== 'GET' &&
  method !== 'HEAD' &&
  (contentType.includes('json') || contentType.includes('application/x-www-form-urlencoded'));

/** Reads a node request's body (once; it is kept on `req.body` for the handler), or null if too big or unreadable. */
function readNodeBody(req: NodeRequestLike): Promise<string | null> {
  return new Promise((resolve) => {
    if (!req.on || req.readable === false) return resolve(null);
    const chunks: Uint8Array[] = [];
    let size = 0;
    req.on('data', (chunk: Uint8Array) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => resolve(size <= MAX_BODY_BYTES ? new TextDecoder().decode(Buffer.concat(chunks)) : null));
    req.on('error', () => resolve(null));
  });
}

/**
 * Finds the token of a request: the query string first, then a JSON or form body. Never throws: a malformed body
 * just has no token. A node:http request whose body no parser has read yet is read here and its text left on
 * `req.body`; a fetch Request's body is read from a clone, so the handler can still read it.
 */
export async function extractToken(
  request: NodeRequestLike | Request,
  { param = DEFAULT_TOKEN_PARAM }: { param?: string } = {},
): Promise<string | null> {
  try {
    if (isFetchRequest(request)) {
      const fromQuery = new URL(request.url).searchParams.get(param);
      if (fromQuery) return fromQuery;
      const contentType = request.headers.get('content-type')?.toLowerCase() ?? '';
      if (!request.body || request.bodyUsed || !hasTokenBody(request.method, contentType)) return null;
      return tokenFromBody(await request.clone().text(), contentType, param);
    }
    const fromQuery = new URL(request.originalUrl ?? request.url ?? '/', 'http://localhost').searchParams.get(param);
    if (fromQuery) return fromQuery;
    const contentType = String(request.headers['content-type'] ?? '').toLowerCase();
    if (!hasTokenBody(request.method, contentType)) return null;
    if (request.body === undefined) {
      const text = await readNodeBody(request);
      if (text === null) return null;
      request.body = text;
    }
    return tokenFromBody(request.body, contentType, param);
  } catch {
    return null;
  }
}

/**
 * Which proxies may set X-Forwarded-For: `false` (default) trusts none; a number trusts that many hops in front of
 * this server; a list trusts those addresses (e.g. `['127.0.0.1', '10.0.0.5']`).
 */
export type TrustProxy = false | number | readonly string[];

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** An IPv4 or IPv6 address in canonical form (IPv4-mapped IPv6 as plain IPv4), or null. No node:net: runs anywhere. */
export function normaliseIp(value: string | null | undefined): string | null {
  if (!value) return null;
  let ip = value.trim();
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  if (IPV4.test(ip)) return ip;
  if (!ip.includes(':') || /[^0-9a-fA-F:.%]/.test(ip.split('%')[0])) return null;
  try {
    const host = new URL(`http://[${ip.split('%')[0]}]/`).hostname.slice(1, -1);
    const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
    if (mapped) {
      const hi = parseInt(mapped[1], 16);
      const lo = parseInt(mapped[2], 16);
      return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
    }
    return host;
  } catch {
    return null;
  }
}

/** Whether the direct peer is a proxy whose forwarding headers may be believed. */
export function isTrustedPeer(peer: string | null | undefined, trustProxy: TrustProxy = false): boolean {
  if (trustProxy === false) return false;
  if (typeof trustProxy === 'number') return trustProxy > 0;
  const address = normaliseIp(peer);
  return address !== null && trustProxy.some((t) => (normaliseIp(t) ?? t) === address);
}

function forwardedFor(headers: IncomingHttpHeaders | Headers): string[] {
  const raw = headers instanceof Headers ? headers.get('x-forwarded-for') : headers['x-forwarded-for'];
  const joined = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
  return joined
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/**
 * The client's IP address. X-Forwarded-For is read only through trusted proxies (see TrustProxy), walking from this
 * server outwards; otherwise it is the socket's address. A fetch Request has no socket: pass `remoteAddress` (Bun's
 * `server.requestIP(req)`, Deno's `info.remoteAddr`…). Returns null when no valid address is known.
 */
export function clientIp(
  request: NodeRequestLike | Request,
  { trustProxy = false, remoteAddress }: { trustProxy?: TrustProxy; remoteAddress?: string | null } = {},
): string | null {
  const socketAddress = normaliseIp(
    remoteAddress !== undefined ? remoteAddress : isFetchRequest(request) ? null : request.socket?.remoteAddress,
  );
  if (trustProxy === false) return socketAddress;
  // The chain as seen from here: the socket peer first, then each X-Forwarded-For entry from right to left. Without
  // a socket (a fetch Request), a hop count still applies: the platform's proxy is the first hop.
  const chain = [socketAddress, ...forwardedFor(request.headers).reverse()];
  let current = socketAddress;
  if (typeof trustProxy === 'number') {
    for (let hop = 1; hop <= trustProxy && hop < chain.length; hop++) {
      const next = normaliseIp(chain[hop]);
      if (next === null) break;
      current = next;
    }
    return current;
  }
  if (socketAddress === null) return null;
  let address: string = socketAddress;
  const trusted = new Set(trustProxy.map((a) => normaliseIp(a) ?? a));
  for (let hop = 1; hop < chain.length && trusted.has(address); hop++) {
    const next = normaliseIp(chain[hop]);
    if (next === null) break;
    address = next;
  }
  return address;
}

/** The body a mail provider POSTs for a one-click unsubscribe (RFC 8058). */
export const ONE_CLICK_BODY = 'List-Unsubscribe=One-Click';

export interface ListUnsubscribeHeaders {
  'List-Unsubscribe': string;
  'List-Unsubscribe-Post': typeof ONE_CLICK_BODY;
}

/**
 * The mail headers of RFC 2369 and RFC 8058 for an unsubscribe link (a tokenised URL, https in production): mail
 * providers show their own "Unsubscribe" button and POST `List-Unsubscribe=One-Click` to the link, without cookies.
 * Route POST of that URL to the middleware (it redeems a POST in every mode) and exempt it from CSRF checks: the
 * token is the proof. `mailto` adds a mail fallback for clients without one-click support.
 */
export function listUnsubscribeHeaders(link: string, { mailto }: { mailto?: string } = {}): ListUnsubscribeHeaders {
  const url = new URL(link);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('listUnsubscribeHeaders: an http(s) link is required');
  const targets = [`<${url.toString()}>`];
  if (mailto) targets.push(`<mailto:${mailto}>`);
  return { 'List-Unsubscribe': targets.join(', '), 'List-Unsubscribe-Post': ONE_CLICK_BODY };
}
