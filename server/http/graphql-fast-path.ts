import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ExecutionResult } from 'graphql';
import { processRegularResult, type YogaServerInstance } from 'graphql-yoga';
import { persistedQueryHash, type PersistedQueryStore } from './persisted-queries.js';
import { ThroughYoga, type PreparedRun } from './prepared-operations.js';

/**
 * The lean transport for plain `POST /graphql` JSON requests. Only the transport is bypassed: Yoga's adaptation of
 * `node:http` to the Fetch API (Request, Headers, AbortSignal objects, body streams), which is most of the cost of a
 * small request (docs/hot-path.md). The body is read once and parsed with `JSON.parse`; then the request goes through
 * Yoga's own processing of GraphQL parameters (`yoga.getResultForParams`): its `onParams` hooks, and the envelop
 * built by `yoga.getEnveloped` (parse and validate with Yoga's caches and every plugin's rules, the context factory,
 * execute with every plugin's `onExecute`, the permission check among them, and Yoga's error masking), then its
 * `onExecutionResult` hooks. A plugin added to Yoga runs here as it runs there. A document Yoga has validated before
 * may instead run as a prepared operation (prepared-operations.ts), which only an app without added plugins has.
 *
 * A result without errors is written straight to the socket; a result with errors goes through Yoga's own result
 * processor (status codes, headers, `http` extensions stripped). Whatever is not a plain JSON POST goes to Yoga, with
 * the body already read when it was: other methods and content types, CORS (an Origin header), Accept headers
 * without a JSON type, batches, `extensions` (but a persisted query's hash that the store knows: its text is looked up
 * here and the request goes on as if it had been sent), bodies over 16 MB.
 */
export interface FastPathOptions {
  yoga: YogaServerInstance<{ req: IncomingMessage; res: ServerResponse }, any>;
  /** The Yoga handler, for everything this path does not take. */
  fallback(req: IncomingMessage, res: ServerResponse): void;
  /** Prepared operations (prepared-operations.ts): documents Yoga validated before, run without its orchestration. */
  prepared?: PreparedRun<unknown>;
  /** Persisted queries (persisted-queries.ts): a known hash is served here, anything else of the protocol by Yoga. */
  persisted?: PersistedQueryStore;
  /** Counted here: requests the prepared lane answered, and those it took and Yoga answered (errors). */
  counts?: PreparedCounts;
  /** A failure of this transport itself (Yoga answers and logs the request's own errors). */
  onError(message: string, error: unknown): void;
}

export interface PreparedCounts {
  prepared: number;
  preparedThroughYoga: number;
}

/** Above this, the body goes to Yoga (which streams it and applies its own size limit). */
const MAX_FAST_BODY = 16 * 1024 * 1024;

type Accepted = 'application/json' | 'application/graphql-response+json';

const matches = (processor: string, asked: string) => {
  const [pre, suf] = asked.split('/');
  const [processorPre, processorSuf] = processor.split('/');
  return (pre === '*' || pre === processorPre) && (suf === '*' || suf === processorSuf);
};

/**
 * The media type Yoga's negotiation picks for a regular result, or null when no regular type is acceptable (Yoga
 * answers those). Yoga lets the first acceptable entry of the header win, and within it application/json.
 */
export function acceptedMediaType(accept: string | undefined): Accepted | null {
  for (const entry of (accept || '*/*').replace(/\s/g, '').toLowerCase().split(',')) {
    const [type, ...params] = entry.split(';');
    const charset = params.find((p) => p.includes('charset=')) ?? 'charset=utf-8';
    if (charset !== 'charset=utf-8') continue;
    if (matches('application/json', type)) return 'application/json';
    if (matches('application/graphql-response+json', type)) return 'application/graphql-response+json';
  }
  return null;
}

/**
 * The request as Yoga's hooks see it. `method` and `url` are plain values; anything else (headers, signal, …) makes
 * the Fetch API Request it stands for, once, so a plugin that reads the request works as under Yoga, and a request
 * whose plugins read nothing more costs no Request at all. (The body was read already and is not offered again.)
 */
function requestView(req: IncomingMessage, fetchAPI: YogaServerInstance<any, any>['fetchAPI']): Request {
  const url = `http://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`;
  let full: Request | undefined;
  const make = () => {
    const headers = new fetchAPI.Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined) continue;
      for (const one of Array.isArray(value) ? value : [value]) headers.append(name, one);
    }
    return new fetchAPI.Request(url, { method: req.method, headers });
  };
  return new Proxy({} as Request, {
    get(_target, prop) {
      if (prop === 'method') return req.method;
      if (prop === 'url') return url;
      full ??= make();
      const value = Reflect.get(full, prop, full);
      return typeof value === 'function' ? value.bind(full) : value;
    },
  });
}

/** The hash of `extensions` when it is an APQ extension and nothing else, or null. */
const onlyPersistedQueryHash = (extensions: unknown) => {
  for (const name in extensions as object) if (name !== 'persistedQuery') return null;
  return persistedQueryHash(extensions);
};

export function createFastPath({ yoga, fallback, prepared, persisted, counts, onError }: FastPathOptions) {
  // Per app instance: clients send a handful of distinct Accept headers; beyond 64, answers are not kept.
  const acceptCache = new Map<string, Accepted | null>();
  const accepted = (accept: string | undefined) => {
    const key = accept ?? '';
    let type = acceptCache.get(key);
    if (type === undefined) {
      type = acceptedMediaType(accept);
      if (acceptCache.size < 64) acceptCache.set(key, type);
    }
    return type;
  };

  // Responses finished while requests are being read are written together once this turn of the event loop has read
  // what arrived (setImmediate), instead of one socket write between each two reads: under load the client is then
  // woken once per burst rather than once per response, which made each write several times dearer (measured: the
  // writev share of a refusal's CPU time fell from about a third; see docs/hot-path.md).
  // With no other request on this path (one request at a time: a lone click), nothing could share the write, and the
  // answer is written at once rather than a turn of the event loop later.
  let pending: [ServerResponse, string][] = [];
  // Requests on this path between their body's end and their answer.
  let open = 0;
  const closed = () => void open--;
  const flushPending = () => {
    const batch = pending;
    pending = [];
    for (const [res, body] of batch) res.end(body);
  };
  const sendSoon = (res: ServerResponse, body: string) => {
    if (open === 1 && pending.length === 0) {
      res.end(body);
      return;
    }
    if (pending.push([res, body]) === 1) setImmediate(flushPending);
  };

  function handOver(req: IncomingMessage, res: ServerResponse, body: Buffer) {
    // @whatwg-node/server takes a body that was already read from `req.body`.
    (req as IncomingMessage & { body?: Buffer }).body = body;
    fallback(req, res);
  }

  async function writeProcessed(res: ServerResponse, result: ExecutionResult, type: Accepted) {
    const response = await processRegularResult(result as never, yoga.fetchAPI, type);
    const text = await response.text();
    const headers: Record<string, string> = {};
    response.headers.forEach((value, name) => (headers[name] = value));
    headers['content-length'] = String(Buffer.byteLength(text));
    res.writeHead(response.status, headers);
    res.end(text);
  }

  async function respond(req: IncomingMessage, res: ServerResponse, body: Buffer, type: Accepted) {
    let params: unknown;
    try {
      params = JSON.parse(body.toString('utf8'));
    } catch {
      return handOver(req, res, body);
    }
    if (typeof params !== 'object' || params === null || Array.isArray(params)) return handOver(req, res, body);
    // Any other member goes to Yoga; checked without a rest object and its key array per request.
    for (const name in params) {
      if (name !== 'query' && name !== 'variables' && name !== 'operationName' && name !== 'extensions') {
        return handOver(req, res, body);
      }
    }
    const { variables, operationName, extensions } = params as Record<string, unknown>;
    let { query } = params as Record<string, unknown>;
    if (extensions !== undefined) {
      // Only a persisted query's hash alone (no text: a registration is Yoga's), known to the store, is served here.
      const hash = persisted && query == null ? onlyPersistedQueryHash(extensions) : null;
      if (hash === null) return handOver(req, res, body);
      query = persisted!.get(hash);
      if (query === undefined) return handOver(req, res, body);
    }
    if (
      typeof query !== 'string' ||
      (variables != null && (typeof variables !== 'object' || Array.isArray(variables))) ||
      (operationName != null && typeof operationName !== 'string')
    ) {
      return handOver(req, res, body);
    }

    // What Yoga does once it has the parameters. The context is one plain object `{ req, res }` (Yoga adds `request`
    // and `params`): a fresh prototype per request, as Yoga's own `Object.create(serverContext)`, made every property
    // access on the context megamorphic, in every plugin and resolver.
    // An error thrown before execution (a hook refusing the request: no or a bad API key, a rate limit) goes to Yoga,
    // which runs the hooks again and answers as it answers such errors (masked, with their HTTP status).
    const vars = (variables as Record<string, unknown> | null) ?? undefined;
    const name = (operationName as string | null) ?? undefined;
    let result: ExecutionResult;
    let serverContext: object = { req, res };
    const taken = prepared?.(req, res, query, vars, name);
    const outcome = taken === undefined ? undefined : await taken;
    if (outcome instanceof ThroughYoga) {
      serverContext = outcome.serverContext;
      if (counts) counts.preparedThroughYoga++;
    }
    if (outcome !== undefined && !(outcome instanceof ThroughYoga)) {
      result = outcome;
      if (counts) counts.prepared++;
    } else {
      try {
        result = (await yoga.getResultForParams(
          { params: { query, variables: vars, operationName: name }, request: requestView(req, yoga.fetchAPI) },
          serverContext as { req: IncomingMessage; res: ServerResponse },
        )) as ExecutionResult;
      } catch {
        return handOver(req, res, body);
      }
    }
    if (result == null || typeof result !== 'object' || Symbol.asyncIterator in result) {
      throw new Error('the lean GraphQL path got a streamed result');
    }
    if (!result.errors?.length) {
      const json = JSON.stringify(result);
      res.writeHead(200, { 'content-type': `${type}; charset=utf-8`, 'content-length': Buffer.byteLength(json) });
      sendSoon(res, json);
      return;
    }
    // Errors (masked already by Yoga's plugin): Yoga's result processor picks status, headers and body.
    await writeProcessed(res, result, type);
  }

  return {
    /** Serves `req` (a request for the GraphQL endpoint) on the lean path or hands it to Yoga. */
    handle(req: IncomingMessage, res: ServerResponse): void {
      const type = accepted(req.headers.accept);
      const contentType = req.headers['content-type'];
      if (
        req.method !== 'POST' ||
        type === null ||
        req.headers.origin !== undefined ||
        !contentType ||
        !/^application\/json\s*(;|$)/i.test(contentType)
      ) {
        fallback(req, res);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let tooBig = false;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_FAST_BODY) tooBig = true;
        chunks.push(chunk);
      });
      req.on('end', () => {
        const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        if (tooBig) return handOver(req, res, body);
        open++;
        respond(req, res, body, type).then(closed, async (error) => {
          closed();
          // Yoga's processing answers its own errors; this is a failure of the transport itself.
          if (res.headersSent) return void res.destroy();
          onError('the lean GraphQL path failed', error);
          res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' });
          res.end(JSON.stringify({ errors: [{ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } }] }));
        });
      });
      req.on('error', () => res.destroy());
    },
  };
}
