import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csvField, parseCsv } from '../cli/csv.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { redeem } from './support/operations.js';
import { ROOT } from './support/process.js';

let server: TestServer;
let dir: string;
beforeAll(async () => {
  [server, dir] = await Promise.all([startTestServer(), mkdtemp(join(tmpdir(), 'rt-cli-'))]);
});
afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

function cli(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ['bin/request-token.mjs', ...args], {
      cwd: ROOT,
      // DATA_DIR: an empty folder, so no admin-api-key file of a local `npm start` stands in for a missing key.
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', DATA_DIR: dir, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const tokenCount = async () => Number((await server.sql('select count(*) from request_token'))[0].count);

describe('request-token issue', () => {
  it('issues one token per row in batches and writes userId, token id and a working link per row', async () => {
    const rows = Array.from({ length: 2_500 }, (_, i) => `user-${i},${i % 2 ? 'weekly' : '"daily, early"'}`);
    const csv = join(dir, 'recipients.csv');
    await writeFile(csv, `userId,list\n${rows.join('\n')}\n`);
    const { code, stdout, stderr } = await cli(
      ['issue', '--scope', 'newsletter', '--csv', csv, '--target-url', 'https://example.com/unsubscribe', '--batch', '1000'],
      { REQUEST_TOKEN_URL: server.url, REQUEST_TOKEN_API_KEY: server.apiKey },
    );
    expect(code, stderr).toBe(0);
    const [header, ...lines] = parseCsv(stdout);
    expect(header).toEqual(['userId', 'tokenId', 'link']);
    expect(lines).toHaveLength(2_500);
    expect(lines.map((l) => l[0])).toEqual(Array.from({ length: 2_500 }, (_, i) => `user-${i}`));
    expect(stderr).toMatch(/2500\/2500 100% \d+ tokens\/s in [\d.]+ s/);
    expect(stderr).toContain('2500 of 2500 tokens issued');

    const [userId, tokenId, link] = lines[7];
    const [row] = await server.sql('select user_id, scope, data from request_token where id = $1', [tokenId]);
    expect(row).toEqual({ user_id: userId, scope: 'newsletter', data: { list: 'weekly' } });
    const [first] = await server.sql('select data from request_token where id = $1', [lines[0][1]]);
    expect(first.data).toEqual({ list: 'daily, early' });
    const jwt = new URL(link).searchParams.get('rt');
    const redemption = await redeem(server, { jwt, scope: 'newsletter', url: link });
    expect(redemption).toMatchObject({ __typename: 'Redemption', token: { id: tokenId } });
  });

  it('names the CSV line of a refused row, writes the tokens of the other batches and exits 1', async () => {
    const rows = Array.from({ length: 30 }, (_, i) => (i === 14 ? 'x'.repeat(300) : `u${i}`));
    const csv = join(dir, 'bad.csv');
    await writeFile(csv, `userId\n${rows.join('\n')}\n`);
    const before = await tokenCount();
    const { code, stdout, stderr } = await cli(
      ['issue', '--scope', 's', '--csv', csv, '--batch', '10', '--url', server.url, '--api-key', server.apiKey],
    );
    expect(code).toBe(1);
    expect(stderr).toContain('line 16 (userId');
    expect(stderr).toContain('userId must be 1–255 characters long');
    expect(stderr).toContain('20 of 30 tokens issued');
    const lines = parseCsv(stdout).slice(1);
    expect(lines.map((l) => l[0])).toEqual([...rows.slice(0, 10), ...rows.slice(20)]);
    expect(lines.every((l) => /^eyJ/.test(l[2]))).toBe(true);
    expect(await tokenCount()).toBe(before + 20);
  });

  it('refuses to run without a scope, a CSV or an API key, and reports a rejected key', async () => {
    const csv = join(dir, 'one.csv');
    await writeFile(csv, 'userId\na\n');
    const noScope = await cli(['issue', '--csv', csv, '--api-key', server.apiKey]);
    expect(noScope.code).toBe(2);
    expect(noScope.stderr).toContain('--scope is required');
    const noKey = await cli(['issue', '--scope', 's', '--csv', csv]);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('REQUEST_TOKEN_API_KEY');
    const badKey = await cli(['issue', '--scope', 's', '--csv', csv, '--url', server.url, '--api-key', 'rt_nope']);
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toMatch(/Invalid, expired or revoked API key/);
  });
});

describe('CSV', () => {
  it('reads quoted fields with commas, quotes and line breaks, and writes them back', () => {
    expect(parseCsv('\ufeffa,b\r\n"x, ""y""","line\nbreak"\n\n3,\n')).toEqual([
      ['a', 'b'],
      ['x, "y"', 'line\nbreak'],
      ['3', ''],
    ]);
    expect(csvField('x, "y"')).toBe('"x, ""y"""');
    expect(csvField('plain')).toBe('plain');
  });
});
