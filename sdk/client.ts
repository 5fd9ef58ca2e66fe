import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import type { OperationDefinitionNode } from 'graphql';
import { ClientError, GraphQLClient } from 'graphql-request';
import { RequestTokenClientError, type RequestTokenClientGraphQLError } from './errors.js';
import { persistedQueryFetch } from './persisted-queries.js';
import * as documents from './generated/graphql.js';

// ---------------------------------------------------------------------------------------------------------------
// Types: one method per generated `<Operation>Document`, named after the operation's root field. Nothing is listed by
// hand: a new sdk/operations/*.graphql file plus `npm run sdk:codegen` adds a method.

type Documents = typeof documents;
type DocumentKey = Extract<keyof Documents, `${string}Document`>;
type MethodNameOf<K> = K extends `${infer Name}Document` ? Uncapitalize<Name> : never;

type ResultOfDocument<D> = D extends TypedDocumentNode<infer R, any> ? R : never;
type VariablesOfDocument<D> = D extends TypedDocumentNode<any, infer V> ? V : never;

/** `{ input: X }` becomes X: a method takes the operation's input object itself. Other variables stay as they are. */
type UnwrapInput<V> = V extends { input: infer I } ? ([Exclude<keyof V, 'input'>] extends [never] ? I : V) : V;

/** Per-call options. */
export interface CallOptions {
  /** Aborts the call (it then throws a RequestTokenClientError of kind 'aborted'). */
  signal?: AbortSignal;
  /** Extra headers for this call only. */
  headers?: Record<string, string>;
}

type Method<D, Name extends string> =
  {} extends UnwrapInput<VariablesOfDocument<D>>
    ? (input?: UnwrapInput<VariablesOfDocument<D>>, options?: CallOptions) => Promise<RootResult<D, Name>>
    : (input: UnwrapInput<VariablesOfDocument<D>>, options?: CallOptions) => Promise<RootResult<D, Name>>;

type RootResult<D, Name extends string> = Name extends keyof ResultOfDocument<D> ? ResultOfDocument<D>[Name] : never;

/** The generated operations as methods: `rt.redeemRequestToken({ jwt, scope })` resolves to the result union. */
export type RequestTokenOperations = {
  [K in DocumentKey as MethodNameOf<K>]: Method<Documents[K], MethodNameOf<K>>;
};

/** Names of the client's operation methods ('createRequestToken', 'redeemRequestToken', …). */
export type OperationName = keyof RequestTokenOperations;
/** What a method takes, e.g. `OperationInput<'redeemRequestToken'>` is RedeemRequestTokenInput. */
export type OperationInput<N extends OperationName> = Parameters<RequestTokenOperations[N]>[0];
/** What a method resolves to, e.g. `OperationResult<'redeemRequestToken'>` is the RedeemRequestTokenResult union. */
export type OperationResult<N extends OperationName> = Awaited<ReturnType<RequestTokenOperations[N]>>;

export interface RequestTokenClient extends RequestTokenOperations {
  /**
   * Runs any typed document (e.g. a dashboard's own query built with codegen) with the client's URL, key, timeout and
   * error handling. Resolves to the whole `data` object. Queries are retried on network errors; mutations only when
   * the connection could not be opened.
   */
  request<R, V extends Record<string, unknown> = Record<string, never>>(
    document: TypedDocumentNode<R, V>,
    ...args: {} extends V ? [variables?: V, options?: CallOptions] : [variables: V, options?: CallOptions]
  ): Promise<R>;
}

export interface RequestTokenClientOptions {
  /** The service's GraphQL endpoint, e.g. `http://localhost:4000/graphql`. */
  url: string;
  /** An API key (`rt_<id>_<secret>`), sent as `Authorization: Bearer <apiKey>`. */
  apiKey: string;
  /** The fetch implementation. Default: `globalThis.fetch`. */
  fetch?: typeof fetch;
  /**
   * Sends a document's SHA-256 hash in place of its text (automatic persisted queries): the text goes once, the first
   * time the service does not know the hash, and the client falls back to texts by itself with a service that does not
   * take hashes. Default: true.
   */
  persistedQueries?: boolean;
  /** Extra headers on every call, or a function that returns them (called per attempt). Default: none. */
  headers?: Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>);
  /** Milliseconds before an attempt is abandoned with a 'timeout' error. Default: 10000. */
  timeoutMs?: number;
  /**
   * Extra attempts after a network error or a retryable answer (503 `SERVICE_UNAVAILABLE`). Default: 2. Queries,
   * idempotent mutations (recordResponseStatus, revokeRequestToken) and redemptions with an `idempotencyKey` retry
   * on either; other mutations only when the connection could not be opened, so a request that may have reached the
   * service is never carried out twice.
   */
  retries?: number;
  /**
   * Base delay before the first retry, doubled for each next one; each wait is drawn at random between half the base
   * and the whole of it (jitter), so clients that failed together do not retry together. Default: 100.
   */
  retryDelayMs?: number;
  /**
   * Decides whether a failed attempt is tried again (within `retries`). Receives the failure and `safe`, the default
   * decision described under `retries`; return `safe && …` to retry less, or more at your own risk (a mutation that
   * may have reached the service could be carried out twice). Default: `({ safe }) => safe`.
   */
  retry?: (failure: RetryContext) => boolean;
}

/** What a `retry` predicate is told about a failed attempt. */
export interface RetryContext {
  /** The error the call would throw if not retried. */
  error: RequestTokenClientError;
  /** The attempt that failed: 1 for the first. */
  attempt: number;
  operationName: string;
  type: 'query' | 'mutation' | 'subscription';
  /** The SDK's own verdict: true for a network error or retryable 503 on a call that cannot be carried out twice. */
  safe: boolean;
}

/** Mutations that give the same outcome when run twice, so any network error may be retried. */
const IDEMPOTENT_MUTATIONS = new Set(['RecordResponseStatus', 'RevokeRequestToken']);

/** Error codes that prove the request never left this process, so even a redemption can be retried. */
const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);

type OperationType = 'query' | 'mutation' | 'subscription';

/**
 * Whether a call that failed with a network error may be sent again: a query or an idempotent mutation always; any
 * other mutation only if the connection was never opened, since it may otherwise have been carried out already.
 */
function safeToRetry(
  info: { operationName: string; type: OperationType },
  code: string | undefined,
  variables?: Record<string, unknown>,
): boolean {
  if (info.type === 'query' || IDEMPOTENT_MUTATIONS.has(info.operationName)) return true;
  // A redemption with an idempotency key: a second send returns the original Redemption and consumes nothing more.
  const input = variables?.input as { idempotencyKey?: unknown } | undefined;
  if (info.operationName === 'RedeemRequestToken' && typeof input?.idempotencyKey === 'string') return true;
  return code !== undefined && NOT_SENT_CODES.has(code);
}

/** The service's answer when its database is away, busy or a row is locked: 503 with `extensions.retryable`. */
function isRetryableAnswer(error: ClientError): boolean {
  return error.response.status === 503 && error.response.errors?.[0]?.extensions?.retryable === true;
}

interface OperationInfo {
  method: string;
  operationName: string;
  type: OperationType;
  rootField: string;
  unwrapInput: boolean;
}

function describe(key: string, document: TypedDocumentNode<unknown, unknown>): OperationInfo {
  const operation = document.definitions.find((d): d is OperationDefinitionNode => d.kind === 'OperationDefinition');
  const name = key.slice(0, -'Document'.length);
  const method = name[0].toLowerCase() + name.slice(1);
  const fields = operation?.selectionSet.selections.filter((s) => s.kind === 'Field') ?? [];
  const rootField = fields.length === 1 && fields[0].kind === 'Field' ? (fields[0].alias ?? fields[0].name).value : '';
  // The method type is derived from the same convention; a document that breaks it would get a method typed `never`.
  if (!operation || operation.name?.value !== name || fields.length !== 1 || rootField !== method) {
    throw new Error(`sdk operation ${name}: expected one root field named ${method} in an operation named ${name}`);
  }
  const variables = operation.variableDefinitions ?? [];
  return {
    method,
    operationName: name,
    type: operation.operation as OperationType,
    rootField,
    // As UnwrapInput does for the types: a lone, required $input.
    unwrapInput:
      variables.length === 1 && variables[0].variable.name.value === 'input' && variables[0].type.kind === 'NonNullType',
  };
}

/** The client's operations, derived from the generated documents. Exported for tests and tooling. */
export const operations: readonly (OperationInfo & { document: TypedDocumentNode<any, any> })[] = Object.entries(
  documents,
)
  .filter(([key]) => key.endsWith('Document'))
  .map(([key, document]) => ({
    ...describe(key, document as TypedDocumentNode<unknown, unknown>),
    document: document as TypedDocumentNode<any, any>,
  }));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function networkCode(error: unknown): string | undefined {
  for (let e: any = error, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (typeof e.code === 'string') return e.code;
  }
  return undefined;
}

function graphqlErrors(error: ClientError): RequestTokenClientGraphQLError[] {
  return (error.response.errors ?? []).map((e) => ({
    message: e.message,
    path: e.path,
    extensions: e.extensions as Record<string, unknown> | undefined,
  }));
}

function fromClientError(error: ClientError, operationName: string, attempts: number): RequestTokenClientError {
  const status = error.response.status;
  const errors = graphqlErrors(error);
  const code = errors[0]?.extensions?.code;
  const first = errors[0]?.message;
  const details = { operationName, status, errors, attempts, cause: error };
  if (status === 401 || code === 'UNAUTHENTICATED') {
    return new RequestTokenClientError('unauthorized', `${operationName}: ${first ?? 'unauthorized (401)'}`, details);
  }
  if (status === 403 || code === 'FORBIDDEN') {
    return new RequestTokenClientError('forbidden', `${operationName}: ${first ?? 'forbidden (403)'}`, details);
  }
  if (status >= 500 || code === 'INTERNAL_SERVER_ERROR') {
    return new RequestTokenClientError('server', `${operationName}: ${first ?? `server error (${status})`}`, details);
  }
  // GraphQL errors come with 200 or, for a document the service refuses to run, 400 (graphql-response+json).
  if (errors.length > 0 && (status < 300 || status === 400)) {
    return new RequestTokenClientError('graphql', `${operationName}: ${first}`, details);
  }
  return new RequestTokenClientError('http', `${operationName}: unexpected HTTP status ${status}`, details);
}

/**
 * A typed client for the request-token service:
 *
 *     const rt = createRequestTokenClient({ url: 'http://localhost:4000/graphql', apiKey })
 *     const issued = await rt.createRequestToken({ scope: 'unsubscribe', userId: '42', targetUrl })
 *     if (issued.__typename === 'CreateRequestTokenSuccess') send(issued.url)
 */
export function createRequestTokenClient(options: RequestTokenClientOptions): RequestTokenClient {
  const { url, apiKey, timeoutMs = 10_000, retries = 2, retryDelayMs = 100 } = options;
  if (!url) throw new TypeError('createRequestTokenClient: `url` is required');
  if (!apiKey) throw new TypeError('createRequestTokenClient: `apiKey` is required');
  const send: typeof fetch = (input, init) => (options.fetch ?? globalThis.fetch)(input, init);
  const graphql = new GraphQLClient(url, { fetch: options.persistedQueries === false ? send : persistedQueryFetch(send) });

  const shouldRetry = options.retry ?? (({ safe }: RetryContext) => safe);
  /** Waits before retry `attempt` (1 for the first): between half and the whole of the doubled base delay. */
  const backoff = (attempt: number) => sleep(retryDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random() / 2));

  async function execute(
    document: TypedDocumentNode<any, any>,
    variables: Record<string, unknown> | undefined,
    info: { operationName: string; type: OperationType },
    call: CallOptions = {},
  ): Promise<any> {
    for (let attempt = 1; ; attempt++) {
      const extra = typeof options.headers === 'function' ? await options.headers() : options.headers;
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = call.signal ? AbortSignal.any([call.signal, timeout]) : timeout;
      let failure: RequestTokenClientError;
      let safe = false;
      try {
        return await graphql.request({
          document,
          variables: variables ?? {},
          requestHeaders: { ...extra, ...call.headers, authorization: `Bearer ${apiKey}` },
          signal,
        });
      } catch (error) {
        const details = { operationName: info.operationName, attempts: attempt, cause: error };
        if (error instanceof ClientError) {
          failure = fromClientError(error, info.operationName, attempt);
          safe = isRetryableAnswer(error) && safeToRetry(info, undefined, variables);
        } else if (call.signal?.aborted) {
          throw new RequestTokenClientError('aborted', `${info.operationName}: aborted by the caller`, details);
        } else if (timeout.aborted) {
          failure = new RequestTokenClientError('timeout', `${info.operationName}: no answer within ${timeoutMs} ms`, details);
        } else {
          const code = networkCode(error);
          if (error instanceof TypeError || code !== undefined) {
            failure = new RequestTokenClientError(
              'network',
              `${info.operationName}: network error${code ? ` (${code})` : ''}: ${(error as Error).message}`,
              details,
            );
            safe = safeToRetry(info, code, variables);
          } else {
            // A 2xx whose body is not a GraphQL response.
            failure = new RequestTokenClientError('http', `${info.operationName}: invalid response from the service`, details);
          }
        }
      }
      if (attempt > retries || !shouldRetry({ error: failure, attempt, operationName: info.operationName, type: info.type, safe })) {
        throw failure;
      }
      await backoff(attempt);
    }
  }

  const client: Record<string, unknown> = {
    request(document: TypedDocumentNode<any, any>, variables?: Record<string, unknown>, call?: CallOptions) {
      const operation = document.definitions.find((d): d is OperationDefinitionNode => d.kind === 'OperationDefinition');
      const info = { operationName: operation?.name?.value ?? 'anonymous operation', type: (operation?.operation ?? 'mutation') as OperationType };
      return execute(document, variables, info, call);
    },
  };
  for (const op of operations) {
    client[op.method] = async (input?: Record<string, unknown>, call?: CallOptions) => {
      const data = await execute(op.document, op.unwrapInput ? { input } : input, op, call);
      return data[op.rootField];
    };
  }
  return client as unknown as RequestTokenClient;
}
