import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { Command } from './commands.js';
import { csvField, parseCsv } from './csv.js';

const USAGE = `usage: request-token issue --scope S --csv recipients.csv [options] > links.csv

Issues one token per CSV row through a running service (createRequestTokens, in batches) and writes
userId,tokenId,link per row to stdout. The CSV has a header row with a userId column; every other column goes
into the token's data. The link is --target-url with the token added as ?rt=…, or the bare JWT without it.

options:
  --scope S             scope of every token (required)
  --csv FILE            recipients, "-" for stdin (required)
  --target-url URL      bind every token to this URL and write tokenised links
  --login-mode MODE     NONE (default), REQUEST or SESSION
  --max-uses N          uses per token (default: the server's)
  --expires-at ISO      expiry of every token, e.g. 2026-12-31T00:00:00Z
  --batch N             tokens per call, 1–10000 (default 5000)
  --max-request-bytes N a call is also cut below this size (default 200000: the service's MAX_BODY_BYTES
                        is 262144 unless configured)
  --concurrency N       calls in flight (default 2)
  --url URL             the service, e.g. http://127.0.0.1:4000 (default: $REQUEST_TOKEN_URL, else that)
  --api-key KEY         an API key allowed to issue (default: $REQUEST_TOKEN_API_KEY)

Progress, rate and ETA go to stderr. Each batch is all or nothing; when one is refused the command still writes
every token issued by other batches, reports the refused rows on stderr and exits with status 1.
`;

const CREATE_MANY = `mutation CreateRequestTokens($inputs: [CreateRequestTokenInput!]!) {
  createRequestTokens(inputs: $inputs) {
    __typename
    ... on CreateRequestTokensSuccess { issued { jwt url token { id } } }
    ... on ValidationError { message issues { path message } }
  }
}`;

interface Recipient {
  line: number;
  userId: string;
  data: Record<string, string> | null;
}

type BatchOutcome =
  | { ok: true; lines: string[] }
  | { ok: false; problems: string[] };

class UsageError extends Error {}

function options(args: string[], env: NodeJS.ProcessEnv) {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      scope: { type: 'string' },
      csv: { type: 'string' },
      'target-url': { type: 'string' },
      'login-mode': { type: 'string' },
      'max-uses': { type: 'string' },
      'expires-at': { type: 'string' },
      batch: { type: 'string' },
      concurrency: { type: 'string' },
      'max-request-bytes': { type: 'string' },
      url: { type: 'string' },
      'api-key': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return null;
  const whole = (name: string, raw: string | undefined, fallback: number, min: number, max: number) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}`);
    return n;
  };
  if (!values.scope) throw new UsageError('--scope is required');
  if (!values.csv) throw new UsageError('--csv is required');
  const apiKey = values['api-key'] ?? env.REQUEST_TOKEN_API_KEY;
  if (!apiKey) throw new UsageError('an API key is required: --api-key or REQUEST_TOKEN_API_KEY');
  const base = (values.url ?? env.REQUEST_TOKEN_URL ?? 'http://127.0.0.1:4000').replace(/\/+$/, '');
  const endpoint = base.endsWith('/graphql') ? base : `${base}/graphql`;
  const loginMode = values['login-mode']?.toUpperCase();
  if (loginMode !== undefined && !['NONE', 'REQUEST', 'SESSION'].includes(loginMode)) {
    throw new UsageError('--login-mode must be NONE, REQUEST or SESSION');
  }
  return {
    scope: values.scope,
    csv: values.csv,
    targetUrl: values['target-url'] ?? null,
    loginMode: loginMode ?? null,
    maxUses: values['max-uses'] === undefined ? null : whole('max-uses', values['max-uses'], 1, 1, 2_147_483_647),
    expiresAt: values['expires-at'] ?? null,
    batch: whole('batch', values.batch, 5000, 1, 10_000),
    concurrency: whole('concurrency', values.concurrency, 2, 1, 16),
    maxRequestBytes: whole('max-request-bytes', values['max-request-bytes'], 200_000, 10_000, 100 * 1024 * 1024),
    endpoint,
    apiKey,
  };
}

function recipients(text: string): Recipient[] {
  const [header, ...rows] = parseCsv(text);
  if (!header) throw new UsageError('the CSV is empty: it needs a header row with a userId column');
  const userCol = header.findIndex((h) => h.trim() === 'userId');
  if (userCol < 0) throw new UsageError(`the CSV header has no userId column (found: ${header.join(', ')})`);
  return rows.map((row, i) => {
    let data: Record<string, string> | null = null;
    header.forEach((name, col) => {
      if (col !== userCol && name.trim() !== '' && row[col] !== undefined && row[col] !== '') {
        (data ??= {})[name.trim()] = row[col];
      }
    });
    return { line: i + 2, userId: (row[userCol] ?? '').trim(), data };
  });
}

/** A progress line on stderr: redrawn in place on a terminal, at most every few seconds otherwise. */
function progress(total: number, stream: NodeJS.WriteStream) {
  const started = Date.now();
  let lastDrawn = 0;
  const draw = (done: number, final = false) => {
    const now = Date.now();
    if (!final && now - lastDrawn < (stream.isTTY ? 100 : 2000)) return;
    lastDrawn = now;
    const seconds = Math.max((now - started) / 1000, 0.001);
    const rate = done / seconds;
    const eta = rate > 0 ? Math.ceil((total - done) / rate) : 0;
    const width = 24;
    const filled = total ? Math.round((done / total) * width) : width;
    const line =
      `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ` +
      `${total ? Math.floor((done / total) * 100) : 100}% ${Math.round(rate)} tokens/s ` +
      (final ? `in ${seconds.toFixed(1)} s` : `ETA ${eta} s`);
    stream.write(stream.isTTY ? `\r${line}${final ? '\n' : ''}` : `${line}\n`);
  };
  return { update: (done: number) => draw(done), finish: (done: number) => draw(done, true) };
}

export const issue: Command = {
  name: 'issue',
  summary: 'issue one token per CSV row through the service and write userId,tokenId,link',
  async run(args) {
    let opts: ReturnType<typeof options>;
    try {
      opts = options(args, process.env);
    } catch (error) {
      if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        process.stderr.write(`request-token issue: ${(error as Error).message}\n\n${USAGE}`);
        return 2;
      }
      throw error;
    }
    if (!opts) {
      process.stdout.write(USAGE);
      return 0;
    }
    let list: Recipient[];
    try {
      list = recipients(opts.csv === '-' ? await readStdin() : await readFile(opts.csv, 'utf8'));
    } catch (error) {
      process.stderr.write(`request-token issue: ${(error as Error).message}\n`);
      return 2;
    }

    const inputFor = (r: Recipient) => ({
      scope: opts.scope,
      userId: r.userId === '' ? null : r.userId,
      data: r.data,
      targetUrl: opts.targetUrl,
      loginMode: opts.loginMode ?? undefined,
      maxUses: opts.maxUses,
      expiresAt: opts.expiresAt,
    });
    // Batches of at most --batch rows whose request stays under --max-request-bytes.
    const batches: Recipient[][] = [];
    let current: Recipient[] = [];
    let bytes = CREATE_MANY.length + 64;
    for (const r of list) {
      const size = Buffer.byteLength(JSON.stringify(inputFor(r))) + 1;
      if (current.length > 0 && (current.length >= opts.batch || bytes + size > opts.maxRequestBytes)) {
        batches.push(current);
        current = [];
        bytes = CREATE_MANY.length + 64;
      }
      current.push(r);
      bytes += size;
    }
    if (current.length > 0) batches.push(current);
    const bar = progress(list.length, process.stderr);
    let issued = 0;

    const send = async (batch: Recipient[]): Promise<BatchOutcome> => {
      const inputs = batch.map(inputFor);
      const res = await fetch(opts.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${opts.apiKey}` },
        body: JSON.stringify({ query: CREATE_MANY, variables: { inputs } }),
      });
      const body = (await res.json().catch(() => null)) as any;
      if (!res.ok || !body?.data) {
        const message = body?.errors?.map((e: { message: string }) => e.message).join('; ') ?? `HTTP ${res.status}`;
        throw new Error(`the service refused the request (HTTP ${res.status}): ${message}`);
      }
      const result = body.data.createRequestTokens;
      if (result.__typename !== 'CreateRequestTokensSuccess') {
        // Issue paths are ["inputs", index, field]: name the CSV line instead of the index.
        const problems = (result.issues as { path: string[]; message: string }[]).map((issue) => {
          const [, index, ...field] = issue.path;
          const recipient = batch[Number(index)];
          return recipient
            ? `line ${recipient.line} (userId ${JSON.stringify(recipient.userId)}): ${field.join('.')} ${issue.message}`
            : `${issue.path.join('.')}: ${issue.message}`;
        });
        return { ok: false, problems };
      }
      const lines = (result.issued as { jwt: string; url: string | null; token: { id: string } }[]).map((item, i) =>
        [batch[i].userId, item.token.id, item.url ?? item.jwt].map(csvField).join(','),
      );
      issued += lines.length;
      bar.update(issued);
      return { ok: true, lines };
    };

    // Up to `concurrency` calls in flight; output is written in input order as batches complete.
    const outcomes: Promise<BatchOutcome>[] = [];
    let next = 0;
    const worker = async () => {
      while (next < batches.length) {
        const index = next++;
        outcomes[index] = send(batches[index]);
        await outcomes[index].catch(() => {});
      }
    };
    const workers = Promise.all(Array.from({ length: Math.min(opts.concurrency, batches.length) }, worker));

    process.stdout.write('userId,tokenId,link\n');
    const problems: string[] = [];
    let failure: unknown = null;
    for (let i = 0; i < batches.length; i++) {
      while (outcomes[i] === undefined) await new Promise((r) => setImmediate(r));
      try {
        const outcome = await outcomes[i];
        if (outcome.ok) await write(`${outcome.lines.join('\n')}\n`);
        else problems.push(...outcome.problems);
      } catch (error) {
        failure ??= error;
      }
    }
    await workers;
    bar.finish(issued);
    if (problems.length > 0) {
      process.stderr.write(`request-token issue: ${problems.length} problem(s); those batches issued nothing:\n`);
      for (const p of problems.slice(0, 50)) process.stderr.write(`  ${p}\n`);
      if (problems.length > 50) process.stderr.write(`  … and ${problems.length - 50} more\n`);
    }
    if (failure) process.stderr.write(`request-token issue: ${(failure as Error).message}\n`);
    process.stderr.write(`request-token issue: ${issued} of ${list.length} tokens issued\n`);
    return problems.length > 0 || failure ? 1 : 0;
  },
};

function write(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (error) => (error ? reject(error) : resolve()));
  });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
