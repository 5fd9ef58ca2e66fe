import { sleep } from './cluster.js';

const REDEEM = `mutation($input: RedeemRequestTokenInput!) { redeemRequestToken(input: $input) {
  __typename ... on Redemption { id token { id } } ... on Error { code } } }`;
const ISSUE = `mutation($input: CreateRequestTokenInput!) { createRequestToken(input: $input) {
  ... on CreateRequestTokenSuccess { jwt token { id maxUses } } } }`;

export async function gql(
  base: string,
  key: string,
  query: string,
  variables: Record<string, unknown>,
  timeoutMs = 10_000,
) {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, body: (await res.json()) as any };
}

export interface LoadToken {
  id: string;
  jwt: string;
  maxUses: number;
  scope: string;
}

export async function issueTokens(base: string, key: string, count: number, maxUses: number, scope: string) {
  const tokens: LoadToken[] = [];
  for (let i = 0; i < count; i++) {
    const { body } = await gql(base, key, ISSUE, { input: { scope, maxUses } });
    const created = body.data.createRequestToken;
    tokens.push({ id: created.token.id, jwt: created.jwt, maxUses, scope });
  }
  return tokens;
}

export interface Acked {
  key: string;
  tokenId: string;
  id: string;
}

export interface LoadResult {
  acked: Acked[];
  refused: number;
  /** Answers that said "retry" (503 SERVICE_UNAVAILABLE) or no answer at all (connection refused, reset). */
  transient: number;
  /** Anything else: opaque internal errors, malformed answers. Must stay empty. */
  unexpected: string[];
  /** Logical redemptions given up after retrying for too long (must stay 0). */
  abandoned: number;
}

/**
 * Workers that redeem round-robin over `tokens`, each logical redemption under its own idempotency key and retried
 * with that key on every transient failure until it gets a definite answer, the way a careful client does. With
 * `keyed: false`, redemptions carry no key (so the service may batch them) and are tried once: a transient failure
 * is counted and not retried, since a retry without a key could rightly count a second use.
 */
export function startLoad(base: string, apiKey: string, tokens: LoadToken[], workers = 8, keyed = true) {
  const result: LoadResult = { acked: [], refused: 0, transient: 0, unexpected: [], abandoned: 0 };
  let running = true;
  let n = 0;
  const worker = async (w: number) => {
    while (running) {
      const token = tokens[n++ % tokens.length];
      const key = `w${w}-${n}`;
      const started = Date.now();
      for (;;) {
        if (Date.now() - started > 20_000) {
          result.abandoned++;
          break;
        }
        let answer: { status: number; body: any } | null = null;
        try {
          const input = { jwt: token.jwt, scope: token.scope, ...(keyed ? { idempotencyKey: key } : {}) };
          answer = await gql(base, apiKey, REDEEM, { input });
        } catch {
          result.transient++;
          await sleep(50);
          if (keyed) continue;
          break;
        }
        const r = answer.body?.data?.redeemRequestToken;
        if (r?.__typename === 'Redemption') {
          result.acked.push({ key, tokenId: r.token.id, id: r.id });
          break;
        }
        if (r?.__typename === 'TokenRejectedError') {
          result.refused++;
          break;
        }
        if (answer.status === 503 && answer.body?.errors?.[0]?.extensions?.code === 'SERVICE_UNAVAILABLE') {
          result.transient++;
          await sleep(50);
          if (keyed) continue;
          break;
        }
        result.unexpected.push(`${answer.status} ${JSON.stringify(answer.body)}`);
        break;
      }
    }
  };
  const all = Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
  return {
    result,
    async stop() {
      running = false;
      await all;
      return result;
    },
  };
}
