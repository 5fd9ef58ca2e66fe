import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRequestTokenClient, type RequestTokenClient } from '@request-token/sdk';
import { startTestServer, type TestServer } from '../support/harness.js';

// The SDK's automatic persisted queries against the real service, with persisted queries on (the default) and off.
// Every request the client sends is recorded by its `fetch` option, with the status it got.
interface Sent {
  body: { query?: string; variables?: unknown; operationName?: string; extensions?: { persistedQuery?: { sha256Hash: string } } };
  status: number;
}

function recordingClient(server: TestServer, options: { persistedQueries?: boolean; apiKey?: string } = {}) {
  const sent: Sent[] = [];
  const rt = createRequestTokenClient({
    url: server.graphqlUrl,
    apiKey: server.apiKey,
    ...options,
    fetch: async (input, init) => {
      const response = await fetch(input, init);
      sent.push({ body: JSON.parse(String(init?.body)), status: response.status });
      return response;
    },
  });
  return { rt, sent };
}

/** What each request carried: the hash, the text, or both. */
const shapes = (sent: Sent[]) =>
  sent.map(({ body, status }) => `${body.extensions?.persistedQuery ? 'hash' : ''}${body.query ? '+text' : ''} ${status}`);

async function issueOne(rt: RequestTokenClient, scope: string) {
  const issued = await rt.createRequestToken({ scope, maxUses: 1 });
  if (issued.__typename !== 'CreateRequestTokenSuccess') throw new Error(issued.message);
  return issued;
}

describe('persisted queries, with a service that takes them', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server?.close());

  it('sends the text once per document, then the hash alone; a redemption sent twice consumes one use', async () => {
    const { rt, sent } = recordingClient(server);
    const first = await issueOne(rt, 'apq');
    // The service did not know the hash: told so (nothing ran), the client sent the text with it.
    expect(shapes(sent)).toEqual(['hash 404', 'hash+text 200']);
    const second = await issueOne(rt, 'apq');
    expect(shapes(sent).slice(2)).toEqual(['hash 200']);
    expect(sent[2].body).toEqual({
      variables: { input: { scope: 'apq', maxUses: 1 } },
      operationName: 'CreateRequestToken',
      extensions: { persistedQuery: { version: 1, sha256Hash: sent[1].body.extensions!.persistedQuery!.sha256Hash } },
    });

    // A redemption on its first use went out twice (hash, then text): the first send consumed nothing.
    const redeemed = await rt.redeemRequestToken({ jwt: first.jwt, scope: 'apq' });
    expect(redeemed.__typename).toBe('Redemption');
    expect(shapes(sent).slice(3)).toEqual(['hash 404', 'hash+text 200']);
    expect(await rt.requestToken({ id: first.token.id })).toMatchObject({ usedToDate: 1 });
    const refused = await rt.redeemRequestToken({ jwt: first.jwt, scope: 'apq' });
    expect(refused).toMatchObject({ __typename: 'TokenRejectedError', code: 'MAX_USES_EXCEEDED' });
    expect(await rt.redeemRequestToken({ jwt: second.jwt, scope: 'apq' })).toMatchObject({ __typename: 'Redemption' });
    expect((await server.sql(`select count(*)::int as n from request_token_log where token_id = $1`, [first.token.id]))[0].n).toBe(2);
  });

  it('registers again with a service that forgot the hash (restarted, another instance)', async () => {
    const { rt, sent } = recordingClient(server);
    await issueOne(rt, 'forgotten');
    const other = await startTestServer({}, {}, { databaseUrl: server.databaseUrl });
    try {
      const { rt: elsewhere, sent: sentElsewhere } = recordingClient(other);
      await issueOne(elsewhere, 'forgotten');
      expect(shapes(sentElsewhere)).toEqual(['hash 404', 'hash+text 200']);
    } finally {
      await other.close();
    }
    expect(shapes(sent)).toEqual(['hash 200']);
  });

  it('sends texts where there is no Web Crypto to hash with', async () => {
    const digest = vi.spyOn(globalThis.crypto.subtle, 'digest').mockRejectedValue(new TypeError('crypto.subtle is undefined'));
    try {
      const { rt, sent } = recordingClient(server);
      await issueOne(rt, 'no-crypto');
      await issueOne(rt, 'no-crypto');
      expect(shapes(sent)).toEqual(['+text 200', '+text 200']);
    } finally {
      digest.mockRestore();
    }
  });

  it('sends texts alone when told not to (persistedQueries: false)', async () => {
    const { rt, sent } = recordingClient(server, { persistedQueries: false });
    await issueOne(rt, 'texts');
    await issueOne(rt, 'texts');
    expect(shapes(sent)).toEqual(['+text 200', '+text 200']);
  });

  it('answers a caller without a valid key as before: unauthorized, the hash neither registered nor run', async () => {
    const { rt, sent } = recordingClient(server, { apiKey: 'rt_aaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' });
    await expect(rt.viewer()).rejects.toMatchObject({ kind: 'unauthorized' });
    expect(shapes(sent)).toEqual(['hash 401']);
  });
});

describe('persisted queries, with a service that does not take them (PERSISTED_QUERIES=off)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ PERSISTED_QUERIES: 'off' });
  });
  afterAll(() => server?.close());

  it('falls back to texts after the first refusal, and keeps sending texts', async () => {
    const { rt, sent } = recordingClient(server);
    const issued = await issueOne(rt, 'fallback');
    expect(shapes(sent)).toEqual(['hash 400', '+text 200']);
    expect(await rt.redeemRequestToken({ jwt: issued.jwt, scope: 'fallback' })).toMatchObject({ __typename: 'Redemption' });
    expect(shapes(sent).slice(2)).toEqual(['+text 200']);
  });
});
