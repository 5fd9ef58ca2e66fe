import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/config.js';
import { startTestServer, type TestServer } from '../support/harness.js';

// Slow and greedy clients over real sockets (issue 17, item 10): one client dripping its headers or its body, or
// opening connection after connection, must not hold the server's connections for minutes.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    HTTP_HEADERS_TIMEOUT_MS: '500',
    HTTP_REQUEST_TIMEOUT_MS: '1000',
    MAX_CONNECTIONS_PER_CLIENT: '3',
  });
});
afterAll(() => server?.close());

interface Conn {
  socket: Socket;
  received: () => string;
  closed: Promise<number>;
}

/** A raw connection; `closed` resolves with the milliseconds it stayed open. */
function open(): Promise<Conn> {
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect(Number(port), '127.0.0.1');
    let got = '';
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('error', () => undefined);
    const closed = new Promise<number>((done) => socket.on('close', () => done(performance.now() - started)));
    socket.once('connect', () => resolve({ socket, received: () => got, closed }));
    socket.once('error', reject);
  });
}

/** Writes `parts` one every `everyMs` while the socket is open (at most `parts.length` writes). */
async function drip(conn: Conn, parts: string[], everyMs: number) {
  for (const part of parts) {
    if (conn.socket.destroyed) return;
    conn.socket.write(part);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const within = <T>(promise: Promise<T>, ms: number) =>
  Promise.race([promise, new Promise<'still open'>((r) => setTimeout(() => r('still open'), ms))]);

describe('slow clients are dropped', () => {
  it('drops a client that drips its headers (slowloris) after the headers timeout', async () => {
    const conn = await open();
    const lines = ['POST /graphql HTTP/1.1\r\n', 'Host: x\r\n', ...Array.from({ length: 40 }, (_, i) => `X-Slow-${i}: ${i}\r\n`)];
    void drip(conn, lines, 150);
    // 40 lines at 150 ms would take 6 s; the server gives it 0.5 s (checked every 125 ms).
    expect(await within(conn.closed, 4_000)).not.toBe('still open');
    expect(conn.received()).toMatch(/^HTTP\/1\.1 408|^$/);
  });

  it('drops a client that drips its body after the request timeout', async () => {
    const conn = await open();
    conn.socket.write('POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n');
    void drip(conn, Array.from({ length: 40 }, () => ' '), 150);
    expect(await within(conn.closed, 4_000)).not.toBe('still open');
  });

  it('defaults to timeouts that fit an API: 10 s for headers, 30 s for a request', () => {
    const config = loadConfig({ NODE_ENV: 'test' });
    expect([config.httpHeadersTimeoutMs, config.httpRequestTimeoutMs, config.maxConnectionsPerClient]).toEqual([10_000, 30_000, 256]);
    expect([server.app.server.headersTimeout, server.app.server.requestTimeout]).toEqual([500, 1000]);
  });
});

describe('connections per client address are capped', () => {
  it('answers 429 to a connection over the cap, and serves again once one closes', async () => {
    const held = [await open(), await open(), await open()];
    const extra = await open();
    expect(await within(extra.closed, 2_000)).not.toBe('still open');
    expect(extra.received()).toMatch(/^HTTP\/1\.1 429/);
    expect(extra.received()).toContain('TOO_MANY_CONNECTIONS');
    held[0].socket.destroy();
    await held[0].closed;
    // Give the server's close handler its turn.
    await new Promise((r) => setTimeout(r, 50));
    const again = await open();
    again.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await within(again.closed, 2_000);
    expect(again.received()).toMatch(/^HTTP\/1\.1 200/);
    for (const conn of held) conn.socket.destroy();
  });
});
