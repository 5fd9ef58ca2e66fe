import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { CreateRequestTokenInput, LoginMode, RequestTokenClient } from '@request-token/sdk';
import type { Command } from './command.js';
import { csvField, parseCsv } from './csv.js';
import { count, serviceTarget, withService } from './service.js';
import { ISSUE_USAGE as USAGE } from './usage.js';


// Room for the document and the JSON around the inputs when cutting batches by size.
const REQUEST_OVERHEAD = 1_000;

interface Recipient {
  line: number;
  userId: string;
  data: Record<string, string> | null;
}

type BatchOutcome =
  | { ok: true; lines: string[] }
  | { ok: false; problems: string[] };

class UsageError extends Error {}

async function options(args: string[]) {
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
  await serviceTarget(values).catch((error) => {
    throw new UsageError(error.message);
  });
  const loginMode = values['login-mode']?.toUpperCase();
  if (loginMode !== undefined && !['NONE', 'REQUEST', 'SESSION'].includes(loginMode)) {
    throw new UsageError('--login-mode must be NONE, REQUEST or SESSION');
  }
  return {
    scope: values.scope,
    csv: values.csv,
    targetUrl: values['target-url'] ?? null,
    loginMode: (loginMode as LoginMode | undefined) ?? null,
    maxUses: values['max-uses'] === undefined ? null : whole('max-uses', values['max-uses'], 1, 1, 2_147_483_647),
    expiresAt: values['expires-at'] ?? null,
    batch: whole('batch', values.batch, 5000, 1, 10_000),
    concurrency: whole('concurrency', values.concurrency, 2, 1, 16),
    maxRequestBytes: whole('max-request-bytes', values['max-request-bytes'], 200_000, 10_000, 100 * 1024 * 1024),
    service: { url: values.url, 'api-key': values['api-key'] },
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

export const issue: Pick<Command, 'run'> = {
  async run(args) {
    let opts: Awaited<ReturnType<typeof options>>;
    try {
      opts = await options(args);
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
    const settings = opts;
    let list: Recipient[];
    try {
      list = recipients(opts.csv === '-' ? await readStdin() : await readFile(opts.csv, 'utf8'));
    } catch (error) {
      process.stderr.write(`request-token issue: ${(error as Error).message}\n`);
      return 2;
    }

    const inputFor = (r: Recipient): CreateRequestTokenInput => ({
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
    let bytes = REQUEST_OVERHEAD;
    for (const r of list) {
      const size = Buffer.byteLength(JSON.stringify(inputFor(r))) + 1;
      if (current.length > 0 && (current.length >= opts.batch || bytes + size > opts.maxRequestBytes)) {
        batches.push(current);
        current = [];
        bytes = REQUEST_OVERHEAD;
      }
      current.push(r);
      bytes += size;
    }
    if (current.length > 0) batches.push(current);
    const bar = progress(list.length, process.stderr);
    let issued = 0;

    return withService(settings.service, (rt) => issueAll(rt));

    async function issueAll(rt: RequestTokenClient): Promise<number> {
    const send = async (batch: Recipient[]): Promise<BatchOutcome> => {
      const result = await rt.createRequestTokens({ inputs: batch.map(inputFor) });
      if (result.__typename !== 'CreateRequestTokensSuccess') {
        // Issue paths are ["inputs", index, field]: name the CSV line instead of the index.
        const problems = result.issues.map((issue) => {
          const [, index, ...field] = issue.path;
          const recipient = batch[Number(index)];
          return recipient
            ? `line ${recipient.line} (userId ${JSON.stringify(recipient.userId)}): ${field.join('.')} ${issue.message}`
            : `${issue.path.join('.')}: ${issue.message}`;
        });
        return { ok: false, problems };
      }
      const lines = result.issued.map((item, i) =>
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
    const workers = Promise.all(Array.from({ length: Math.min(settings.concurrency, batches.length) }, worker));

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
      process.stderr.write(`request-token issue: ${count(problems.length, 'problem')}; those batches issued nothing:\n`);
      for (const p of problems.slice(0, 50)) process.stderr.write(`  ${p}\n`);
      if (problems.length > 50) process.stderr.write(`  … and ${problems.length - 50} more\n`);
    }
    if (failure) process.stderr.write(`request-token issue: ${(failure as Error).message}\n`);
    process.stderr.write(`request-token issue: ${issued} of ${count(list.length, 'token')} issued\n`);
    return problems.length > 0 || failure ? 1 : 0;
    }
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
