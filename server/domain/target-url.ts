/** The query parameter that carries the JWT in a link. */
export const TOKEN_PARAM = 'rt';
export const MAX_URL_LENGTH = 2048;

/** The parts of a URL that a token's targetUrl binds: host and path, and query parameters (all values per name). */
export interface UrlParts {
  host: string;
  path: string;
  params: Record<string, string[]>;
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** Parses an absolute http(s) URL, or returns why it is not acceptable as a link target. */
export function parseHttpUrl(value: string): URL | string {
  if (value.length > MAX_URL_LENGTH) return `must be at most ${MAX_URL_LENGTH} characters`;
  if (CONTROL_CHARS.test(value)) return 'must not contain control characters';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an absolute http(s) URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an absolute http(s) URL';
  if (!/^https?:\/\/[^/?#]/i.test(value)) return 'must be an absolute http(s) URL';
  if (url.username || url.password) return 'must not contain credentials';
  return url;
}

export function urlParts(url: URL): UrlParts {
  const params: Record<string, string[]> = {};
  for (const [name, value] of url.searchParams) {
    if (name === TOKEN_PARAM) continue;
    (params[name] ??= []).push(value);
  }
  return { host: url.host.toLowerCase(), path: url.pathname, params };
}

/**
 * Whether a requested URL matches a target: same host and path, and every query parameter of the target present with
 * exactly the target's values, in order (a repeated parameter does not match: the application may read either value).
 * The scheme, the token parameter and any extra parameters (utm_* and the like) are ignored. Redemption does the same
 * test in SQL (`boundParamsSql` in redeem.ts); this is its reference.
 */
export function urlMatches(target: UrlParts, requested: UrlParts): boolean {
  if (target.host !== requested.host || target.path !== requested.path) return false;
  return Object.entries(target.params).every(([name, values]) => {
    const given = requested.params[name];
    return given !== undefined && given.length === values.length && values.every((v, i) => given[i] === v);
  });
}

/** Adds the JWT to a URL as the `rt` query parameter, keeping existing parameters and the fragment. */
export function tokeniseUrl(url: string, jwt: string, param = TOKEN_PARAM): string {
  const parsed = new URL(url);
  parsed.searchParams.set(param, jwt);
  return parsed.toString();
}
