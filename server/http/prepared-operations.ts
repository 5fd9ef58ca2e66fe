import type { IncomingMessage, ServerResponse } from 'node:http';
import { getOperationAST, type DocumentNode, type ExecutionResult, type OperationDefinitionNode } from 'graphql';
import type { CompiledQuery } from 'graphql-jit';
import type { Plugin } from 'graphql-yoga';
import { withFieldLocations } from './graphql-jit.js';

/**
 * Prepared operations: the lean path's way past envelop's per-request orchestration for a document Yoga has already
 * parsed and validated (the SDK's operations, a dashboard's queries: clients send the same few texts again and again).
 *
 * Per query text and operation name, the plan holds what every request for it would arrive at: the validated document
 * (Yoga's own validation, with every plugin's rules, passed it: the document cache says so) and the query compiled by
 * graphql-jit. A request for it then runs what Yoga's hooks would run, in their order, with nothing else:
 * the API key known to the authenticator's cache, the permission and cost checks, the rate limit, the caller's
 * context, the compiled query. A result without errors is the answer, as on the lean path.
 *
 * Anything else is Yoga's to answer, exactly as before, and nothing is counted twice:
 * - before anything is counted (no plan, no or an unknown API key, a refused permission or cost, a caller over its
 *   rate limit: those refusals do not count), the request goes the lean path's usual way;
 * - once the request is counted (the rate limit took it), its context is handed to Yoga's hooks with it (the API key
 *   hook then neither checks nor counts again). A result with errors is answered by Yoga: an operation that had not
 *   run (variables refused) or a query runs again there; a mutation that ran is not run again, its result (with the
 *   locations graphql-js gives) is handed to Yoga's execution in place of running it (`usePreparedOutcome`), so
 *   masking, status codes and every hook after execution apply to it as to any other.
 */

/** Where the caller's context is left for Yoga's context factory (by the API key hook, or by this lane). */
export const CALLER_CONTEXT = Symbol('caller context');
/** A prepared operation's outcome, for Yoga's execution to answer with instead of running the operation again. */
const OUTCOME = Symbol('prepared outcome');

type Outcome = { result: ExecutionResult } | { error: unknown };

/** The server context both transports pass, with what this lane and the API key hook leave on it. */
export interface ServerContext<C> {
  req: IncomingMessage;
  res: ServerResponse;
  [CALLER_CONTEXT]?: C;
  [OUTCOME]?: Outcome;
}

/** A request this lane took and counted, for Yoga to answer with this server context. */
export class ThroughYoga<C> {
  constructor(readonly serverContext: ServerContext<C>) {}
}

interface Prepared {
  document: DocumentNode;
  operation: OperationDefinitionNode;
  query: CompiledQuery;
}

export interface PreparedOperationsOptions<C> {
  /** The document this query text parses to if Yoga's validation passed it (under the current rules), else null. */
  validDocument(source: string): DocumentNode | null;
  /** The query compiled by graphql-jit, or null when it runs on Yoga's executor. */
  compiled(document: DocumentNode, operationName: string | undefined): CompiledQuery | null;
  /**
   * The caller's context if the request may run now, counted against its rate limit: its API key is known (cached),
   * the operation is allowed to it and within the cost limit, and the rate limit took it. Null, counting nothing,
   * otherwise (Yoga's hooks answer).
   */
  admit(req: IncomingMessage, document: DocumentNode, variables: Record<string, unknown> | undefined, operationName: string | undefined): C | null;
  /** Query texts kept; beyond, the oldest plan is dropped. */
  max?: number;
}

const isPromise = (value: unknown): value is Promise<unknown> =>
  typeof (value as { then?: unknown } | null)?.then === 'function';

export type PreparedRun<C> = (
  req: IncomingMessage,
  res: ServerResponse,
  query: string,
  variables: Record<string, unknown> | undefined,
  operationName: string | undefined,
) => undefined | ExecutionResult | ThroughYoga<C> | Promise<ExecutionResult | ThroughYoga<C>>;

export function createPreparedOperations<C>(options: PreparedOperationsOptions<C>): PreparedRun<C> {
  const max = options.max ?? 1000;
  // Per query text, per operation name: the prepared operation, or null (Yoga runs it: no single operation, a
  // subscription, not compiled).
  const plans = new Map<string, Map<string | undefined, Prepared | null>>();

  const planFor = (query: string) => {
    const document = options.validDocument(query);
    if (!document) return undefined;
    if (plans.size >= max) plans.delete(plans.keys().next().value!);
    const plan = new Map<string | undefined, Prepared | null>();
    plans.set(query, plan);
    return plan;
  };
  const prepare = (query: string, operationName: string | undefined): Prepared | null => {
    const document = options.validDocument(query);
    const operation = document && getOperationAST(document, operationName);
    if (!document || !operation || operation.operation === 'subscription') return null;
    const compiled = options.compiled(document, operationName);
    return compiled && { document, operation, query: compiled };
  };

  return (req, res, query, variables, operationName) => {
    const plan = plans.get(query) ?? planFor(query);
    if (!plan) return undefined;
    let prepared = plan.get(operationName);
    if (prepared === undefined) plan.set(operationName, (prepared = prepare(query, operationName)));
    if (!prepared) return undefined;
    const context = options.admit(req, prepared.document, variables, operationName);
    if (context === null) return undefined;

    // Counted from here on: whatever happens is answered with this context.
    const throughYoga = (outcome?: Outcome) =>
      new ThroughYoga<C>(outcome ? { req, res, [CALLER_CONTEXT]: context, [OUTCOME]: outcome } : { req, res, [CALLER_CONTEXT]: context });
    const { operation, document } = prepared;
    const settle = (result: ExecutionResult): ExecutionResult | ThroughYoga<C> => {
      if (!result.errors?.length) return result;
      // Nothing ran (variables refused), or a query: Yoga runs it again for its exact errors.
      if (!('data' in result) || operation.operation === 'query') return throughYoga();
      return throughYoga({ result: withFieldLocations(result, document, operation) });
    };
    let result: ReturnType<CompiledQuery['query']>;
    try {
      result = prepared.query.query(undefined, context, variables ?? {});
    } catch (error) {
      return throughYoga({ error });
    }
    return isPromise(result)
      ? result.then((r) => settle(r as ExecutionResult), (error) => throughYoga({ error }))
      : settle(result as ExecutionResult);
  };
}

/**
 * Answers with a prepared operation's outcome in place of running it (the operation ran on the prepared lane), so
 * that Yoga's masking, status codes and result hooks apply. Placed after every plugin that sets the execute function.
 */
export function usePreparedOutcome(): Plugin {
  return {
    onExecute({ args, setExecuteFn }) {
      const outcome = (args.contextValue as unknown as ServerContext<unknown>)[OUTCOME];
      if (!outcome) return;
      setExecuteFn(() => {
        if ('error' in outcome) throw outcome.error;
        return outcome.result;
      });
    },
  };
}
