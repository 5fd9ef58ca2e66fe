import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
}

/**
 * Sends an HTTP/1.1 request over a plain socket: the head first, then the body only if no answer came within
 * `bodyDelayMs`. A server that refuses a body by its Content-Length answers before any of the body is sent, so the
 * answer is read reliably (fetch would race a reset connection against the response, and a test could not tell a
 * refusal from a dropped connection). Rejects when the connection closes without a complete response head.
 */
export function rawRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer; bodyDelayMs?: number } = {},
): Promise<RawResponse> {
  const { hostname, port, pathname, search } = new URL(url);
  const body = options.body === undefined ? Buffer.alloc(0) : Buffer.from(options.body);
  const headers: Record<string, string> = {
    host: `${hostname}:${port}`,
    connection: 'close',
    'content-length': String(body.length),
    ...options.headers,
  };
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let received = Buffer.alloc(0);
    let settled = false;
    const parse = (): RawResponse | null => {
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return null;
      const [statusLine, ...lines] = received.subarray(0, end).toString('latin1').split('\r\n');
      const parsed: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        parsed[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const content = received.subarray(end + 4);
      const length = parsed['content-length'];
      if (length !== undefined && content.length < Number(length)) return null;
      const chunked = parsed['transfer-encoding'] === 'chunked';
      const text = chunked ? dechunk(content) : content.toString('utf8');
      if (text === null) return null;
      return { status: Number(statusLine.split(' ')[1]), headers: parsed, text };
    };
    const settle = (response: RawResponse | null, error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(later);
      socket.destroy();
      if (response) resolve(response);
      else reject(error ?? new Error('the connection closed without a response'));
    };
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      const response = parse();
      if (response) settle(response);
    });
    // A write error after the server answered (it closed without reading the body) is expected; the answer counts.
    socket.on('error', (error) => settle(parse(), error));
    socket.on('close', () => settle(parse()));
    const head = `${options.method ?? 'POST'} ${pathname}${search} HTTP/1.1\r\n${Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n`;
    socket.write(head);
    const later = setTimeout(() => {
      if (!settled && body.length > 0) socket.write(body);
    }, options.bodyDelayMs ?? 500);
  });
}

/** The body of a chunked response, or null while its last chunk has not arrived. */
function dechunk(content: Buffer): string | null {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = content.indexOf('\r\n', at);
    if (eol < 0) return null;
    const size = parseInt(content.subarray(at, eol).toString('latin1'), 16);
    if (Number.isNaN(size)) return null;
    if (size === 0) return Buffer.concat(parts).toString('utf8');
    if (content.length < eol + 2 + size) return null;
    parts.push(content.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}
