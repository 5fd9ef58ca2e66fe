import type { Server } from 'node:http';
import type { Socket } from 'node:net';

const REFUSAL = JSON.stringify({
  errors: [{ message: 'Too many open connections from this address; retry later.', extensions: { code: 'TOO_MANY_CONNECTIONS' } }],
});

/**
 * At most `max` open connections per client address: one client (a slow one, holding sockets open) cannot take all
 * the server's connections. A connection over the cap is answered 429 and closed at once, and a request that arrives
 * on it anyway is not served (`refused`). Behind a
 * proxy every connection comes from the proxy's address: set the cap above the proxy's own pool, or 0 (no cap).
 */
export function createConnectionCap(server: Server, max: number): { refused(socket: Socket): boolean } {
  const refused = new WeakSet<Socket>();
  if (max <= 0) return { refused: () => false };
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const count = (open.get(address) ?? 0) + 1;
    if (count > max) {
      socket.end(
        `HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n` +
          `Content-Length: ${Buffer.byteLength(REFUSAL)}\r\n\r\n${REFUSAL}`,
      );
      // Closed once written, whatever the client sends meanwhile (its request is not served: see `refused`).
      socket.destroySoon();
      refused.add(socket);
      return;
    }
    open.set(address, count);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left <= 0) open.delete(address);
      else open.set(address, left);
    });
  });
  return { refused: (socket) => refused.has(socket) };
}
