import { createRequire } from 'node:module';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EnvelopArmor } from '@escape.tech/graphql-armor';
import { GraphQLError, NoSchemaIntrospectionCustomRule, type DocumentNode, type ValidationContext } from 'graphql';
import { createYoga, type Plugin } from 'graphql-yoga';
import { schema } from '../../schema/index.js';
import { createAuthorizer } from './authorization.js';
import { createContext, type Context, type Services } from '../context.js';
import type { Caller } from '../domain/api-keys.js';
import { TRANSIENT_MESSAGES, transientReason } from '../database/db-errors.js';
import { handleDashboard } from './dashboard.js';
import { graphiqlTabs } from './graphiql-dashboard-tabs.js';
import { graphiqlExample } from './graphiql-example.js';
import { withApiKeyBar } from './graphiql-page.js';
import { createRateLimiter } from './rate-limit.js';
import { createFastPath, type PreparedCounts } from './graphql-fast-path.js';
import { useGraphqlJit } from './graphql-jit.js';
import { CALLER_CONTEXT, createPreparedOperations, usePreparedOutcome } from './prepared-operations.js';
import { useDocumentCache } from './document-cache.js';
import { createPersistedQueryStore, usePersistedQueries } from './persisted-queries.js';
import { createCostCheck } from './query-cost.js';
import { createConnectionCap } from './connection-cap.js';

const require = createRequire(import.meta.url);
const loadGraphiQL = () => require('@graphql-yoga/render-graphiql') as typeof import('@graphql-yoga/render-graphiql');

export interface App {
  server: Server;
  /** Bound address once listening. */
  url: string;
  listen(port: number, host: string): Promise<string>;
  /** Stops accepting, fails readiness, lets in-flight requests finish (up to the deadline), then closes. */
  stop(deadlineMs?: number): Promise<void>;
  /** Requests the prepared lane answered, and those it took and left to Yoga (prepared-operations.ts). */
  readonly lanes: PreparedCounts;
}

function unauthenticated(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });
}

/** A refusal of the edge's limits: a clear message, a code, and HTTP 400 whatever the Accept header. */
function limitError(code: string, message: string): GraphQLError {
  // spec: false, or Yoga would answer a validation error 200 to application/json clients. It stays false: Yoga's
  // parse hook for requests (usePreventMutationViaGET) sets `spec ||= true` on every parse error it sees.
  const http = { status: 400 } as { status: number; spec: boolean };
  Object.defineProperty(http, 'spec', { get: () => false, set: () => {}, enumerable: true });
  return new GraphQLError(message, { extensions: { code, http } });
}

/**
 * graphql-armor's limits, answering with a code of their own. Its rules throw "Syntax Error: …" (answered 200 to
 * application/json clients); here each refusal is reported as a validation error, or thrown by the parser (tokens).
 */
function armorPlugins(): Plugin<Context>[] {
  const report = (code: string) => ({
    propagateOnRejection: false,
    onReject: [
      (ctx: ValidationContext | null, error: GraphQLError) => {
        const refusal = limitError(code, error.message.replace(/^Syntax Error: /, ''));
        if (!ctx) throw refusal;
        ctx.reportError(refusal);
      },
    ],
  });
  const armor = new EnvelopArmor({
    maxDepth: { n: 10, flattenFragments: true, ignoreIntrospection: true, ...report('DEPTH_LIMIT_EXCEEDED') },
    maxAliases: { n: 10, ...report('ALIAS_LIMIT_EXCEEDED') },
    maxDirectives: { n: 10, ...report('DIRECTIVE_LIMIT_EXCEEDED') },
    maxTokens: { n: 2000, ...report('TOKEN_LIMIT_EXCEEDED') },
    // The cost limit needs the request's variables: createCostCheck, before execution.
    costLimit: { enabled: false },
    blockFieldSuggestion: { enabled: true },
  });
  return armor.protect().plugins as Plugin<Context>[];
}

/** Where onParams (or the prepared lane, prepared-operations.ts) leaves the caller's context for the context factory. */
type CallerHolder = { [CALLER_CONTEXT]?: Context };

const BEARER = /^Bearer\s+(\S+)$/i;

/** The one path GraphQL is served at. */
const GRAPHQL_PATH = '/graphql';

function refuse(res: ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
  res.end(JSON.stringify({ errors: [{ message, extensions: { code } }] }));
}

// Content types a browser may send cross-site without a preflight: a GraphQL POST must not use them (CSRF).
const SIMPLE_CONTENT_TYPES = /^(text\/plain|application\/x-www-form-urlencoded|multipart\/form-data)\b/i;

export interface AppOptions {
  /** More Yoga/envelop plugins, after the edge's own; they apply to every request, on the lean transport too. */
  plugins?: Plugin<Context>[];
}

export function createApp(services: Services, options: AppOptions = {}): App {
  const { log, config } = services;
  let stopping = false;
  const limiter = createRateLimiter();

  // Deliberate GraphQL errors pass; anything else is logged in full and reaches the client as an opaque error.
  const maskError = (error: unknown, message: string) => {
    const original = error instanceof GraphQLError ? error.originalError : error;
    if (error instanceof GraphQLError && (!original || original instanceof GraphQLError)) return error;
    const reason = transientReason(original ?? error);
    if (reason) {
      log.info(`retryable failure (${reason}): ${(original as Error | undefined)?.message ?? message}`);
      // The upkeep normally creates months ahead; this one is missing now (a clock jump, an operator's drop).
      if (reason === 'LOG_PARTITION_MISSING') services.logPartitions?.nudge();
      return new GraphQLError(TRANSIENT_MESSAGES[reason], {
        extensions: {
          code: 'SERVICE_UNAVAILABLE',
          reason,
          retryable: true,
          http: { status: 503, headers: { 'retry-after': '1' } },
        },
      });
    }
    log.error('unexpected error while serving a request', original ?? error);
    return new GraphQLError(message, { extensions: { code: 'INTERNAL_SERVER_ERROR' } });
  };
  /** The context of an authenticated caller, or null. Throws the 429 of a caller over its rate limit. */
  const contextOf = (caller: Caller | null): Context | null => {
    if (!caller) return null;
    const retryAfter = limiter.take(caller.keyId, caller.rateLimitPerMinute ?? config.rateLimitPerMinute);
    if (retryAfter !== null) {
      throw new GraphQLError('Too many requests for this API key; retry later.', {
        extensions: { code: 'RATE_LIMITED', http: { status: 429, headers: { 'retry-after': String(retryAfter) } } },
      });
    }
    return createContext(services, caller);
  };
  /**
   * The caller's context, or null when the Authorization header holds no valid API key; a promise only when the key is
   * not in the authenticator's cache (a known key is settled without one, so Yoga's hooks stay synchronous). Throws
   * the 429 of a caller over its rate limit.
   */
  const contextFor = (header: string): Context | null | Promise<Context | null> => {
    const match = BEARER.exec(header);
    if (!match) return null;
    const known = services.authenticator.cached(match[1]);
    if (known !== undefined) return contextOf(known);
    return services.authenticator.authenticate(() => services.orm.em.fork(), match[1]).then(contextOf);
  };
  const authorize = createAuthorizer();
  const checkCost = createCostCheck(schema, config.maxQueryCost);
  /**
   * What every operation must pass before it runs, on every path: each selected field allowed to the caller (403),
   * then the cost limit with the request's variables (400).
   */
  const admit = (document: DocumentNode, context: Context, variables?: Record<string, unknown> | null, operationName?: string | null) =>
    authorize(schema, document, context.caller) ?? checkCost(document, variables, operationName, context);

  // The caller is known before the document is parsed or validated (onParams), so that a request without a valid key
  // learns nothing from validation messages about the schema: 401 first.
  // Handed to the context factory on the server context object both transports pass (no WeakMap entry per request),
  // or keyed by the request when there is none.
  const callers = new WeakMap<Request, Context>();
  const holdContext = (request: Request, serverContext: object | undefined, context: Context | null) => {
    if (!context) throw unauthenticated('Invalid, expired or revoked API key.');
    if (serverContext) (serverContext as CallerHolder)[CALLER_CONTEXT] = context;
    else callers.set(request, context);
  };
  const plugins: Plugin<Context>[] = [
    {
      onParams({ request, context: serverContext }) {
        // Authenticated and counted already, by the prepared lane (its operation is answered here after all).
        if ((serverContext as CallerHolder | undefined)?.[CALLER_CONTEXT]) return;
        // The node request's header when there is one (both transports pass `{ req, res }`): no Headers object needed.
        const req = (serverContext as { req?: IncomingMessage } | undefined)?.req;
        const header = req ? (req.headers.authorization ?? null) : request.headers.get('authorization');
        if (!header) throw unauthenticated('Missing API key: send "Authorization: Bearer <api key>".');
        if (!BEARER.test(header)) {
          throw unauthenticated('The Authorization header must read "Bearer <api key>" (the word Bearer, a space, the key).');
        }
        const context = contextFor(header);
        if (context instanceof Promise) return context.then((settled) => holdContext(request, serverContext, settled));
        holdContext(request, serverContext, context);
      },
    },
  ];
  // Persisted queries (persisted-queries.ts): after the API key hook, so that only a known caller registers a text or
  // learns whether a hash is known.
  const persisted = config.persistedQueries ? createPersistedQueryStore() : undefined;
  if (persisted) plugins.push(usePersistedQueries(persisted) as Plugin<Context>);
  plugins.push(...armorPlugins());
  const corsOrigins = new Set(config.corsOrigins);
  if (corsOrigins.size) {
    plugins.push({ onResponse: ({ response }) => response.headers.append('vary', 'Origin') });
  }
  if (!config.introspection) {
    plugins.push({ onValidate: ({ addValidationRule }) => addValidationRule(NoSchemaIntrospectionCustomRule) });
  }
  plugins.push({
    onExecute({ args, setResultAndStopExecution }) {
      const error = admit(args.document, args.contextValue as Context, args.variableValues, args.operationName);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
  });

  const mode = config.graphqlFastPath;
  const jit = mode === 'jit' || mode === 'prepared' ? useGraphqlJit() : null;
  // Off when plugins are added: each of them must see every request (prepared-operations.ts runs only our hooks).
  const preparing = mode === 'prepared' && !options.plugins?.length;
  const documentCache = useDocumentCache();
  const yoga = createYoga<{ req: IncomingMessage; res: ServerResponse }, Context>({
    schema,
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    logging: false,
    batching: false,
    // Server-to-server callers need no CORS and the dashboard is same-origin: off unless origins are configured, and
    // never with credentials (the API key travels in a header the page sets, not in a cookie).
    // An origin not listed gets no CORS header at all (Yoga's own list answers "null", which a sandboxed page matches).
    cors: (request) => {
      const origin = request.headers.get('origin');
      if (origin === null || !corsOrigins.has(origin)) return false;
      return { origin: [origin], credentials: false, methods: ['GET', 'POST'], allowedHeaders: ['authorization', 'content-type'], maxAge: 600 };
    },
    plugins: [
      ...plugins,
      // Operations compiled by graphql-jit, with the exact answers of graphql-js where they differ (graphql-jit.ts).
      ...(jit ? [jit as Plugin<Context>] : []),
      // After graphql-jit: the outcome of an operation the prepared lane ran, when Yoga answers it.
      ...(preparing ? [usePreparedOutcome() as Plugin<Context>] : []),
      ...(options.plugins ?? []),
      // Last, after every plugin has added its validation rules: Yoga's parser and validation cache, cheaper.
      documentCache,
    ],
    parserAndValidationCache: false,
    // GraphiQL needs introspection: it is offered where introspection is. Its page and assets are inlined from the
    // package (no CDN), so it works offline like the dashboard. The package holds the whole GraphiQL bundle as
    // strings (several MB of heap): it is loaded on the first page view, not at start-up.
    renderGraphiQL: (options) => withApiKeyBar(loadGraphiQL().renderGraphiQL(options)),
    graphiql: config.introspection && {
      title: 'request-token',
      defaultQuery: graphiqlExample,
      defaultTabs: graphiqlTabs,
    },
    maskedErrors: { maskError },
    context: (initial) => {
      const context = (initial as CallerHolder)[CALLER_CONTEXT] ?? callers.get(initial.request);
      if (!context) throw unauthenticated('Missing API key: send "Authorization: Bearer <api key>".');
      return context;
    },
  });
  const yogaHandler = (req: IncomingMessage, res: ServerResponse) => void yoga(req, res, { req, res });
  // What Yoga's hooks do for a request of a known caller, in their order, for the prepared lane (the other outcomes
  // are left to the hooks): the cached API key, the permission and cost checks, then the rate limit.
  const admitPrepared = (
    req: IncomingMessage,
    document: DocumentNode,
    variables: Record<string, unknown> | undefined,
    operationName: string | undefined,
  ): Context | null => {
    const header = req.headers.authorization;
    const match = header === undefined ? null : BEARER.exec(header);
    const caller = match && services.authenticator.cached(match[1]);
    if (!caller) return null;
    const context = createContext(services, caller);
    if (admit(document, context, variables, operationName)) return null;
    if (limiter.take(caller.keyId, caller.rateLimitPerMinute ?? config.rateLimitPerMinute) !== null) return null;
    return context;
  };
  // Yoga's result hooks would not run on the prepared lane: there must be none (Yoga's own plugins have none; if a
  // later Yoga no longer lists them where we look, the lane stays off).
  const resultHooks = (yoga as unknown as { onExecutionResultHooks?: unknown[] }).onExecutionResultHooks;
  const prepared =
    preparing && resultHooks?.length === 0 && jit
      ? createPreparedOperations<Context>({
          validDocument: documentCache.validDocument,
          compiled: (document, operationName) => jit.compiled({ schema, document, operationName }),
          admit: admitPrepared,
        })
      : undefined;
  const lanes: PreparedCounts = { prepared: 0, preparedThroughYoga: 0 };
  // Plain JSON POSTs skip Yoga's Fetch-API adaptation (and, for prepared operations, its orchestration); anything else
  // goes to Yoga.
  const fastPath =
    mode === 'off'
      ? null
      : createFastPath({
          yoga,
          fallback: yogaHandler,
          prepared,
          persisted,
          counts: lanes,
          onError: (message, error) => log.error(message, error),
        });

  const server = createServer(
    {
      // An API's requests are small: a client that takes longer to send its headers, or its request, is dropped
      // (Node's defaults, 60 s and 300 s, let one slow client hold a connection for minutes). Checked this often.
      headersTimeout: config.httpHeadersTimeoutMs,
      requestTimeout: config.httpRequestTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, Math.ceil(config.httpHeadersTimeoutMs / 4)),
    },
    (req, res) => {
      if (cap.refused(req.socket)) return;
      if (stopping) res.setHeader('connection', 'close');
      const path = req.url?.split('?')[0];
      if (path === '/healthz') {
        void health(services, stopping).then(({ status, body }) => {
          res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
          res.end(JSON.stringify(body));
        });
        return;
      }
      if (path === '/.well-known/jwks.json' && (req.method === 'GET' || req.method === 'HEAD')) {
        // Public keys only (asymmetric keys that still verify), so client backends can check signatures offline.
        res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'public, max-age=300' });
        res.end(req.method === 'HEAD' ? undefined : JSON.stringify(services.codec.ring.jwks()));
        return;
      }
      if (path && handleDashboard(req, res, path)) return;
      if (path === '/' && req.method === 'GET') {
        res.writeHead(302, { location: GRAPHQL_PATH });
        res.end();
        return;
      }
      // GraphQL at exactly one path: anything else (/graphql/, /x/graphql, which Yoga would serve) is refused before
      // its body is read, so the guards below cannot be walked around.
      if (path !== GRAPHQL_PATH) return refuse(res, 404, 'NOT_FOUND', `Not found. The GraphQL endpoint is ${GRAPHQL_PATH}.`);
      if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS') {
        const length = req.headers['content-length'];
        if (length === undefined) {
          if (req.headers['transfer-encoding']) return refuse(res, 411, 'LENGTH_REQUIRED', 'Send a Content-Length.');
        } else if (!/^\d+$/.test(length) || Number(length) > config.maxBodyBytes) {
          return refuse(res, 413, 'PAYLOAD_TOO_LARGE', `Request bodies are limited to ${config.maxBodyBytes} bytes.`);
        }
        if (SIMPLE_CONTENT_TYPES.test(req.headers['content-type'] ?? 'text/plain')) {
          return refuse(res, 415, 'UNSUPPORTED_MEDIA_TYPE', 'Send GraphQL requests as application/json.');
        }
      }
      if (fastPath) fastPath.handle(req, res);
      else yogaHandler(req, res);
    },
  );
  const cap = createConnectionCap(server, config.maxConnectionsPerClient);
  server.keepAliveTimeout = 5_000;

  const app: App = {
    server,
    url: '',
    lanes,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address() as AddressInfo;
          const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          app.url = `http://${shownHost}:${address.port}`;
          resolve(app.url);
        });
      });
    },
    async stop(deadlineMs = 10_000) {
      stopping = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, deadlineMs).unref());
      await Promise.race([closed, deadline]);
      server.closeAllConnections();
    },
  };
  return app;
}

async function health(services: Services, stopping: boolean) {
  if (stopping) return { status: 503, body: { status: 'stopping' } };
  try {
    await services.pool.query({ text: 'select 1', query_timeout: 2_000 } as never);
    return { status: 200, body: { status: 'ok' } };
  } catch {
    return { status: 503, body: { status: 'database unavailable' } };
  }
}
