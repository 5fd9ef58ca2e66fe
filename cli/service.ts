import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createRequestTokenClient, isRequestTokenClientError, type RequestTokenClient } from '@request-token/sdk';

import { UsageError } from './command.js';

export { UsageError };

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses a command's arguments; `--url` and `--api-key` are always accepted. */
export function parseCommand<O extends Options>(args: string[], options: O) {
  try {
    return parseArgs({
      args,
      options: { ...options, url: { type: 'string' }, 'api-key': { type: 'string' } },
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Where the service is and which key to use: options, then the environment, then what `npm start` wrote. */
export async function serviceTarget(
  values: { url?: string | boolean; 'api-key'?: string | boolean },
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ endpoint: string; apiKey: string }> {
  const base = String(values.url ?? env.REQUEST_TOKEN_URL ?? `http://127.0.0.1:${env.PORT || 4000}`).replace(/\/+$/, '');
  const endpoint = base.endsWith('/graphql') ? base : `${base}/graphql`;
  let apiKey = typeof values['api-key'] === 'string' ? values['api-key'] : env.REQUEST_TOKEN_API_KEY;
  if (!apiKey) {
    const file = join(env.DATA_DIR || '.data', 'admin-api-key');
    apiKey = (await readFile(file, 'utf8').catch(() => '')).trim();
    if (!apiKey) throw new UsageError(`an API key is needed: --api-key, REQUEST_TOKEN_API_KEY or the file ${file}`);
  }
  return { endpoint, apiKey };
}

/** Runs `work` with an SDK client bound to the service, turning transport failures into one readable line. */
export async function withService(
  values: { url?: string | boolean; 'api-key'?: string | boolean },
  work: (rt: RequestTokenClient) => Promise<number>,
): Promise<number> {
  const { endpoint, apiKey } = await serviceTarget(values);
  const rt = createRequestTokenClient({ url: endpoint, apiKey, retries: 0 });
  try {
    return await work(rt);
  } catch (error) {
    if (!isRequestTokenClientError(error)) throw error;
    const why: Record<string, string> = {
      network: `cannot reach the service at ${endpoint}: is it running (npm start)? Set --url or REQUEST_TOKEN_URL`,
      timeout: `no answer from the service at ${endpoint}`,
      unauthorized: 'the service refused the API key (unknown, expired or revoked)',
      forbidden: 'this API key may not do that: an admin key is needed',
    };
    throw new Error(why[error.kind] ?? error.message);
  }
}

/** The problems of a ValidationError, one per line, then exit status 2. */
export function validationFailed(result: { message: string; issues: { path: string[]; message: string }[] }): number {
  const issues = result.issues.length ? result.issues : [{ path: [], message: result.message }];
  for (const issue of issues) {
    const where = issue.path.filter((p) => p !== 'input').join('.');
    process.stderr.write(`request-token: ${where ? `${where}: ` : ''}${issue.message}\n`);
  }
  return 2;
}

/** "1 row", "2 rows". */
export const count = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** Prints rows as aligned columns. */
export function printTable(rows: Record<string, unknown>[]): void {
  if (rows.length === 0) return void process.stdout.write('(none)\n');
  const columns = Object.keys(rows[0]);
  const cell = (v: unknown) => (v == null ? '-' : v instanceof Date ? v.toISOString() : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  process.stdout.write(`${line(columns)}\n`);
  for (const row of rows) process.stdout.write(`${line(columns.map((c) => cell(row[c])))}\n`);
}
