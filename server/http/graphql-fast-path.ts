import type { IncomingMessage, ServerResponse } from 'node:http';
import { normalizedExecutor } from '@graphql-tools/executor';
import {
  getOperationAST,
  GraphQLError,
  Kind,
  parse,
  specifiedRules,
  validate,
  type DocumentNode,
  type ExecutionResult,
  type FieldNode,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import type { GraphQLSchema } from 'graphql';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import { processRegularResult, type YogaServerInstance } from 'graphql-yoga';

/**
 * The lean path for plain `POST /graphql` JSON requests: the body is read once, parsed with `JSON.parse`, the document
 * is looked up in a cache of parsed and validated documents, and the operation runs with the same executor, schema,
 * context and error masking that Yoga uses; the response is written straight to the socket. It skips Yoga's
 * per-request Fetch-API adaptation (Request/Headers/AbortSignal objects, body streams), which is most of the cost of a
 * small request (see docs/hot-path.md).
 *
 * Whatever it is not sure to answer exactly as Yoga would goes to Yoga, with the body already read: other methods
 * and content types, CORS (an Origin header), unusual Accept headers, batches, extensions, documents that do not parse
 * or validate, subscriptions, and requests without a valid API key (Yoga answers 401).
 */
export interface FastPathOptions<TContext> {
  schema: GraphQLSchema;
  yoga: YogaServerInstance<any, any>;
  /** The Yoga handler, for everything this path does not take. */
  fallback(req: IncomingMessage, res: ServerResponse): void;
  /** The request's GraphQL context for this Authorization header, or null to let Yoga answer. */
  context(authorization: string | undefined): Promise<TContext | null>;
  /** Yoga's error masking, applied to every execution error as Yoga applies it. */
  maskError(error: unknown, message: string): Error;
  /** Parsed and validated documents kept, by query text. */
  cacheSize?: number;
  /** Run operations compiled by graphql-jit (else with Yoga's executor). */
  jit?: boolean;
  /** Parses and validates as Yoga does (its plugins' rules included); throws on a syntax error. */
  parseAndValidate?: (query: string) => { document: DocumentNode; errors: readonly GraphQLError[] };
  /**
   * Yoga's per-request check before execution (permissions, cost with the variables): an error stops the operation,
   * as `setResultAndStopExecution`.
   */
  authorize?: (
    document: DocumentNode,
    context: TContext,
    variables: Record<string, unknown> | null,
    operationName: string | undefined,
  ) => GraphQLError | null;
}

const MASKED_MESSAGE = 'Unexpected error.';
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
  const key = accept ?? '';
  const known = acceptCache.get(key);
  if (known !== undefined) return known;
  const type = negotiate(accept);
  // Clients send a handful of distinct headers; anything else is answered without being kept.
  if (acceptCache.size < 64) acceptCache.set(key, type);
  return type;
}
const acceptCache = new Map<string, Accepted | null>();

function negotiate(accept: string | undefined): Accepted | null {
  for (const entry of (accept || '*/*').replace(/\s/g, '').toLowerCase().split(',')) {
    const [type, ...params] = entry.split(';');
    const charset = params.find((p) => p.includes('charset=')) ?? 'charset=utf-8';
    if (charset !== 'charset=utf-8') continue;
    if (matches('application/json', type)) return 'application/json';
    if (matches('application/graphql-response+json', type)) return 'application/graphql-response+json';
  }
  return null;
}

/** The field nodes a response path points at (what graphql-js reports as an error's locations). */
function fieldNodesAt(document: DocumentNode, operation: OperationDefinitionNode, path: readonly (string | number)[]) {
  const fragments = new Map(
    document.definitions.flatMap((d) => (d.kind === Kind.FRAGMENT_DEFINITION ? [[d.name.value, d] as const] : [])),
  );
  const collect = (set: SelectionSetNode, key: string, into: FieldNode[], seen: Set<string>) => {
    for (const s of set.selections) {
      if (s.kind === Kind.FIELD && (s.alias ?? s.name).value === key) into.push(s);
      else if (s.kind === Kind.INLINE_FRAGMENT) collect(s.selectionSet, key, into, seen);
      else if (s.kind === Kind.FRAGMENT_SPREAD && !seen.has(s.name.value) && fragments.has(s.name.value)) {
        seen.add(s.name.value);
        collect(fragments.get(s.name.value)!.selectionSet, key, into, seen);
      }
    }
  };
  let sets: SelectionSetNode[] = [operation.selectionSet];
  let nodes: FieldNode[] = [];
  for (const key of path) {
    if (typeof key === 'number') continue;
    nodes = [];
    for (const set of sets) collect(set, key, nodes, new Set());
    sets = nodes.flatMap((n) => (n.selectionSet ? [n.selectionSet] : []));
  }
  return nodes;
}

interface CachedDocument {
  document: DocumentNode;
  /** Per operation name: the operation compiled by graphql-jit, or null where it declined (the executor runs it). */
  compiled: Map<string | undefined, CompiledQuery | null>;
}

// Responses finished while requests are being read are written together once this turn of the event loop has read
// what arrived (setImmediate), instead of one socket write between each two reads: under load the client is then
// woken once per burst rather than once per response, which made each write several times dearer (measured: the
// writev share of a refusal's CPU time fell from about a third; see docs/hot-path.md).
let pending: [ServerResponse, string][] = [];
function flushPending() {
  const batch = pending;
  pending = [];
  for (const [res, body] of batch) res.end(body);
}
function sendSoon(res: ServerResponse, body: string) {
  if (pending.push([res, body]) === 1) setImmediate(flushPending);
}

export function createFastPath<TContext>(options: FastPathOptions<TContext>) {
  const { schema, yoga, fallback } = options;
  const cacheSize = options.cacheSize ?? 1000;
  // Query text → parsed and validated document; null marks text that Yoga must answer (parse or validation errors).
  const documents = new Map<string, CachedDocument | null>();

  function documentFor(query: string): CachedDocument | null {
    const hit = documents.get(query);
    if (hit !== undefined) return hit;
    let entry: CachedDocument | null = null;
    try {
      if (options.parseAndValidate) {
        // A syntax error goes to Yoga before Yoga's own parser (and its cache) has seen the text.
        parse(query);
        const { document, errors } = options.parseAndValidate(query);
        if (errors.length === 0) entry = { document, compiled: new Map() };
      } else {
        const document = parse(query);
        if (validate(schema, document, specifiedRules).length === 0) entry = { document, compiled: new Map() };
      }
    } catch {
      entry = null;
    }
    if (documents.size >= cacheSize) documents.delete(documents.keys().next().value!);
    documents.set(query, entry);
    return entry;
  }

  function handOver(req: IncomingMessage, res: ServerResponse, body: Buffer) {
    // @whatwg-node/server takes a body that was already read from `req.body`.
    (req as IncomingMessage & { body?: Buffer }).body = body;
    fallback(req, res);
  }

  async function respond(req: IncomingMessage, res: ServerResponse, body: Buffer, accepted: Accepted) {
    let params: unknown;
    try {
      params = JSON.parse(body.toString('utf8'));
    } catch {
      return handOver(req, res, body);
    }
    if (typeof params !== 'object' || params === null || Array.isArray(params)) return handOver(req, res, body);
    const { query, variables, operationName, ...rest } = params as Record<string, unknown>;
    if (
      typeof query !== 'string' ||
      Object.keys(rest).length > 0 ||
      (variables != null && (typeof variables !== 'object' || Array.isArray(variables))) ||
      (operationName != null && typeof operationName !== 'string')
    ) {
      return handOver(req, res, body);
    }
    const cached = documentFor(query);
    if (!cached) return handOver(req, res, body);
    const operation = getOperationAST(cached.document, (operationName as string | null) ?? undefined);
    if (!operation || operation.operation === 'subscription') return handOver(req, res, body);

    let contextValue: TContext | null;
    try {
      contextValue = await options.context(req.headers.authorization);
    } catch {
      // The key could not be checked (database outage): Yoga checks it again and answers as it does (a 503).
      return handOver(req, res, body);
    }
    if (contextValue === null) return handOver(req, res, body);

    const name = (operationName as string | null) ?? undefined;
    const refused =
      options.authorize?.(cached.document, contextValue, (variables as Record<string, unknown> | null) ?? null, name) ?? null;
    let compiled = cached.compiled.get(name);
    if (compiled === undefined && options.jit) {
      const attempt = compileQuery(schema, cached.document, name);
      compiled = isCompiledQuery(attempt) ? attempt : null;
      cached.compiled.set(name, compiled);
    }
    const execute = async () =>
      (await normalizedExecutor({
        schema,
        document: cached.document,
        variableValues: (variables as Record<string, unknown> | null) ?? undefined,
        operationName: name,
        contextValue,
      })) as ExecutionResult;
    let result = refused
      ? ({ errors: [refused] } as ExecutionResult)
      : compiled
        ? ((await compiled.query(undefined, contextValue, (variables as Record<string, unknown> | null) ?? {})) as ExecutionResult)
        : await execute();
    if (!refused && compiled && result.errors?.length) {
      // graphql-jit words variable errors its own way and reports some field errors without locations. Without
      // `data` nothing ran (the variables were refused), and a query has no side effects: run those again with
      // Yoga's executor for the exact answer. A mutation cannot run twice: its errors get the locations graphql-js
      // gives.
      if (!('data' in result) || operation.operation === 'query') {
        result = await execute();
      } else {
        const errors = result.errors.map((e) =>
          e.locations || !e.path
            ? e
            : new GraphQLError(e.message, {
                nodes: fieldNodesAt(cached.document, operation, e.path),
                path: e.path,
                originalError: e.originalError ?? e,
              }),
        );
        result = { ...result, errors };
      }
    }

    if (!result.errors?.length) {
      const json = JSON.stringify(result);
      res.writeHead(200, {
        'content-type': `${accepted}; charset=utf-8`,
        'content-length': Buffer.byteLength(json),
      });
      sendSoon(res, json);
      return;
    }
    // Errors are rare here: mask them as Yoga does and let Yoga's own result processor pick status and body.
    result = { ...result, errors: result.errors.map((e) => options.maskError(e, MASKED_MESSAGE)) } as unknown as ExecutionResult;
    const response = await processRegularResult(result, yoga.fetchAPI, accepted);
    const text = await response.text();
    const headers: Record<string, string> = {};
    response.headers.forEach((value, name) => (headers[name] = value));
    headers['content-length'] = String(Buffer.byteLength(text));
    res.writeHead(response.status, headers);
    res.end(text);
  }

  return {
    /** Serves `req` (a request for the GraphQL endpoint) on the lean path or hands it to Yoga. */
    handle(req: IncomingMessage, res: ServerResponse): void {
      const accepted = acceptedMediaType(req.headers.accept);
      const type = req.headers['content-type'];
      if (
        req.method !== 'POST' ||
        accepted === null ||
        req.headers.origin !== undefined ||
        !type ||
        !/^application\/json\s*(;|$)/i.test(type)
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
        respond(req, res, body, accepted).catch(async (error) => {
          // An error thrown outside execution: masked as Yoga masks it, status and body by Yoga's result processor.
          if (res.headersSent) return void res.destroy();
          try {
            const masked = options.maskError(error, MASKED_MESSAGE);
            const response = await processRegularResult({ errors: [masked] } as never, yoga.fetchAPI, accepted);
            const text = await response.text();
            const headers: Record<string, string> = {};
            response.headers.forEach((value, name) => (headers[name] = value));
            res.writeHead(response.status, { ...headers, 'content-length': String(Buffer.byteLength(text)) });
            res.end(text);
          } catch {
            res.destroy();
          }
        });
      });
      req.on('error', () => res.destroy());
    },
  };
}
