/**
 * Automatic persisted queries (Apollo's APQ protocol), at the level of the client's `fetch`: each GraphQL POST is sent
 * as its document's SHA-256 hash with the variables, without the document's text. When the service does not know the
 * hash yet (404 PERSISTED_QUERY_NOT_FOUND: first use since it started, or another instance; nothing ran), the same
 * request is sent again with the text and the hash, which registers it. A redemption's request is then 467 bytes
 * instead of 1,125.
 *
 * A service that does not take hashes (persisted queries turned off, a version before them) answers 400 "Must
 * provide query string." or PERSISTED_QUERY_NOT_SUPPORTED: the request is sent again with its text alone, and this
 * client sends texts from then on. Nothing ran in either case, so the second send cannot carry anything out twice.
 */
type Fetch = typeof fetch;

interface Body {
  query?: unknown;
  variables?: unknown;
  operationName?: unknown;
  extensions?: Record<string, unknown>;
}

/** Hashes kept per client (the SDK's operations and the documents given to `request`): beyond, the oldest goes. */
const MAX_HASHES = 500;

async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  let hex = '';
  for (const byte of digest) hex += byte.toString(16).padStart(2, '0');
  return hex;
}

/** What the first error of a refused answer says, if the answer is a GraphQL response. */
function firstError(text: string): { message?: unknown; code?: unknown } | undefined {
  try {
    const error = (JSON.parse(text) as { errors?: { message?: unknown; extensions?: { code?: unknown } }[] }).errors?.[0];
    return error && { message: error.message, code: error.extensions?.code };
  } catch {
    return undefined;
  }
}

/** `base` with persisted queries. */
export function persistedQueryFetch(base: Fetch): Fetch {
  const hashes = new Map<string, Promise<string>>();
  let supported = true;
  const hashOf = (query: string) => {
    let hash = hashes.get(query);
    if (!hash) {
      if (hashes.size >= MAX_HASHES) hashes.delete(hashes.keys().next().value!);
      hash = sha256Hex(query);
      hashes.set(query, hash);
    }
    return hash;
  };

  return async (input, init) => {
    if (!supported || init?.method !== 'POST' || typeof init.body !== 'string') return base(input, init);
    let body: Body;
    try {
      body = JSON.parse(init.body) as Body;
    } catch {
      return base(input, init);
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body) || typeof body.query !== 'string') return base(input, init);
    const { query, ...rest } = body;
    let sha256Hash: string;
    try {
      sha256Hash = await hashOf(query);
    } catch {
      // No Web Crypto here (a browser page served over plain HTTP): texts, from now on.
      hashes.clear();
      supported = false;
      return base(input, init);
    }
    const extensions = { ...body.extensions, persistedQuery: { version: 1, sha256Hash } };
    const answer = await base(input, { ...init, body: JSON.stringify({ ...rest, extensions }) });
    if (answer.status !== 404 && answer.status !== 400) return answer;

    // A refusal: of the hash (send again, as the protocol says), or of something else (the caller's to see).
    const text = await answer.text();
    const error = firstError(text);
    if (error?.code === 'PERSISTED_QUERY_NOT_FOUND') {
      return base(input, { ...init, body: JSON.stringify({ ...body, extensions }) });
    }
    if (error?.code === 'PERSISTED_QUERY_NOT_SUPPORTED' || (answer.status === 400 && error?.message === 'Must provide query string.')) {
      supported = false;
      return base(input, init);
    }
    return new Response(text, { status: answer.status, statusText: answer.statusText, headers: answer.headers });
  };
}
