import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { clientIp, extractToken, normaliseIp, tokenise, type NodeRequestLike } from '@request-token/sdk';

const node = (over: Partial<NodeRequestLike> & { remote?: string }): NodeRequestLike => ({
  method: 'GET',
  url: '/',
  headers: {},
  socket: { remoteAddress: over.remote ?? '10.0.0.1' },
  ...over,
});

describe('tokenise', () => {
  it('adds the token and keeps existing parameters and the fragment', () => {
    expect(tokenise('https://a.example/u?list=weekly&x=1#top', 'h.p.s')).toBe(
      'https://a.example/u?list=weekly&x=1&rt=h.p.s#top',
    );
  });
  it('replaces an old token and honours a custom parameter name', () => {
    expect(tokenise('https://a.example/u?rt=old', 'new')).toBe('https://a.example/u?rt=new');
    expect(tokenise('https://a.example/u', 'j', { param: 'token' })).toBe('https://a.example/u?token=j');
  });
});

describe('extractToken', () => {
  it('reads the query string of a node request and of a fetch Request', async () => {
    expect(await extractToken(node({ url: '/u?list=1&rt=abc' }))).toBe('abc');
    expect(await extractToken(new Request('https://a.example/u?token=xyz'), { param: 'token' })).toBe('xyz');
  });

  it('reads a parsed body (express.json / express.urlencoded) and raw JSON or form bodies', async () => {
    const post = { method: 'POST' as const };
    expect(await extractToken(node({ ...post, headers: { 'content-type': 'application/json' }, body: { rt: 'parsed' } }))).toBe(
      'parsed',
    );
    const json = new Request('https://a.example/u', { ...post, headers: { 'content-type': 'application/json' }, body: '{"rt":"j1"}' });
    expect(await extractToken(json)).toBe('j1');
    // The handler can still read the body.
    expect(await json.json()).toEqual({ rt: 'j1' });
    const form = new Request('https://a.example/u', {
      ...post,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click&rt=f1',
    });
    expect(await extractToken(form)).toBe('f1');
  });

  it('never throws on a malformed or odd body', async () => {
    const bad = (body: string, type = 'application/json') =>
      extractToken(new Request('https://a.example/u', { method: 'POST', headers: { 'content-type': type }, body }));
    expect(await bad('{not json')).toBeNull();
    expect(await bad('"a string"')).toBeNull();
    expect(await bad('{"rt": 42}')).toBeNull();
    expect(await bad('%E0%A4%A', 'application/x-www-form-urlencoded')).toBeNull();
    expect(await extractToken(node({ url: '//%%' }))).toBeNull();
  });

  it('reads a raw node:http body stream once and leaves it on req.body', async () => {
    const seen: unknown[] = [];
    const server = createServer(async (req: IncomingMessage & { body?: unknown }, res) => {
      seen.push(await extractToken(req), req.body);
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path: '/u', headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end('{"rt":"streamed"}');
    });
    await new Promise((r) => server.close(r));
    expect(seen).toEqual(['streamed', '{"rt":"streamed"}']);
  });
});

describe('clientIp', () => {
  const xff = (value: string, remote = '10.0.0.1') => node({ headers: { 'x-forwarded-for': value }, remote });

  it('is the socket address unless proxies are trusted', () => {
    expect(clientIp(xff('6.6.6.6'))).toBe('10.0.0.1');
    expect(clientIp(node({ remote: '::ffff:127.0.0.1' }))).toBe('127.0.0.1');
  });

  it('walks X-Forwarded-For from the right by the trusted hop count', () => {
    expect(clientIp(xff('6.6.6.6, 203.0.113.7'), { trustProxy: 1 })).toBe('203.0.113.7');
    expect(clientIp(xff('6.6.6.6, 203.0.113.7, 10.0.0.2'), { trustProxy: 2 })).toBe('203.0.113.7');
    // More hops than entries: the leftmost entry.
    expect(clientIp(xff('203.0.113.7'), { trustProxy: 5 })).toBe('203.0.113.7');
    // Garbage stops the walk at the last real address.
    expect(clientIp(xff('not-an-ip'), { trustProxy: 1 })).toBe('10.0.0.1');
  });

  it('believes X-Forwarded-For only from listed proxies', () => {
    const trustProxy = ['10.0.0.1', '10.0.0.2'];
    expect(clientIp(xff('6.6.6.6, 203.0.113.7, 10.0.0.2'), { trustProxy })).toBe('203.0.113.7');
    // A client talking to us directly cannot spoof its address.
    expect(clientIp(xff('6.6.6.6', '198.51.100.4'), { trustProxy })).toBe('198.51.100.4');
  });

  it('takes a fetch Request address from remoteAddress, and counts hops without one', () => {
    const request = new Request('https://a.example/', { headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.7' } });
    expect(clientIp(request)).toBeNull();
    expect(clientIp(request, { remoteAddress: '2001:DB8::1' })).toBe('2001:db8::1');
    expect(clientIp(request, { trustProxy: 1 })).toBe('203.0.113.7');
  });

  it('normalises addresses and refuses what is not one', () => {
    expect(normaliseIp('[::1]')).toBe('::1');
    expect(normaliseIp('::ffff:7f00:1')).toBe('127.0.0.1');
    expect(normaliseIp('256.1.1.1')).toBeNull();
    expect(normaliseIp('example.com')).toBeNull();
    expect(normaliseIp('1.2.3.4:80')).toBeNull();
  });
});
