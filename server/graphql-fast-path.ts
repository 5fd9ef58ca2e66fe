import type { IncomingMessage, ServerResponse } from 'node:http';
import { normalizedExecutor } from '@graphql-tools/executor';
import {
  getOperationAST,
  parse,
  specifiedRules,
  validate,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLSchema,
} from 'graphql';
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
  for (const entry of (accept || '*/*').replace(/\s/g, '').toLowerCase().split(',')) {
    const [type, ...params] = entry.split(';');
    const charset = params.find((p) => p.includes('charset=')) ?? 'charset=utf-8';
    if (charset !== 'charset=utf-8') continue;
    if (matches('application/json', type)) return 'application/json';
    if (matches('application/graphql-response+json', type)) return 'application/graphql-response+json';
  }
  return null;
}

interface CachedDocument {
  document: DocumentNode;
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
      const document = parse(query);
      if (validate(schema, document, specifiedRules).length === 0) entry = { document };
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

    const contextValue = await options.context(req.headers.authorization);
    if (contextValue === null) return handOver(req, res, body);

    let result = (await normalizedExecutor({
      schema,
      document: cached.document,
      variableValues: (variables as Record<string, unknown> | null) ?? undefined,
      operationName: (operationName as string | null) ?? undefined,
      contextValue,
    })) as ExecutionResult;

    if (!result.errors?.length) {
      const json = JSON.stringify(result);
      res.writeHead(200, {
        'content-type': `${accepted}; charset=utf-8`,
        'content-length': Buffer.byteLength(json),
      });
      res.end(json);
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
        respond(req, res, body, accepted).catch((error) => {
          // Only a bug in this file lands here: answer as Yoga answers an unexpected error.
          const masked = options.maskError(error, MASKED_MESSAGE);
          if (res.headersSent) {
            res.destroy();
            return;
          }
          const json = JSON.stringify({ errors: [{ message: masked.message, extensions: { code: 'INTERNAL_SERVER_ERROR' } }] });
          res.writeHead(500, { 'content-type': `${accepted}; charset=utf-8`, 'content-length': Buffer.byteLength(json) });
          res.end(json);
        });
      });
      req.on('error', () => res.destroy());
    },
  };
}
