import { parseArgs } from 'node:util';
import { loadCliConfig } from './connect.js';
import { ValidationError } from '../server/domain/errors.js';
import { truncateLogs, validateRetentionPolicy, DEFAULT_BATCH_SIZE, type DoomedRows } from '../server/domain/log-retention.js';
import type { Command } from './commands.js';
import { openServiceDatabase } from './database.js';

const USAGE = `usage: request-token logs truncate [--max-count N] [--max-days D] [--batch-size B] [--dry-run]
       request-token logs truncate --all [--batch-size B] [--dry-run]

Deletes redemption log rows beyond the newest N and/or older than D days (24-hour periods), oldest first, in batches of
B rows (default ${DEFAULT_BATCH_SIZE}), each its own short transaction. N and D are at least 1: to empty the log, say
--all (django-request-token's --max-count 0 / --max-days 0 meant "no limit": leave the option out instead). Connects
like the service: DATABASE_URL, else the embedded PostgreSQL under DATA_DIR (default ./.data). --dry-run shows what
would be deleted.
`;

const iso = (d: Date | null) => (d ? d.toISOString() : '-');
const span = (r: DoomedRows) => `ids ${r.firstId}–${r.lastId}, ${iso(r.oldest)} … ${iso(r.newest)}`;

function wholeNumber(name: string, raw: string | undefined): number | null | string {
  if (raw === undefined) return null;
  return /^\d+$/.test(raw) ? Number(raw) : `--${name} must be a whole number, got "${raw}"`;
}

export const logsTruncate: Command = {
  name: 'logs truncate',
  summary: 'delete old redemption log rows (--max-count N, --max-days D, or --all), in batches',
  async run(args) {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        options: {
          'max-count': { type: 'string' },
          'max-days': { type: 'string' },
          'batch-size': { type: 'string' },
          'dry-run': { type: 'boolean', default: false },
          all: { type: 'boolean', default: false },
          help: { type: 'boolean', short: 'h', default: false },
        },
        strict: true,
        allowPositionals: false,
      }).values;
    } catch (error) {
      process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
      return 2;
    }
    if (parsed.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const numbers = {
      maxCount: wholeNumber('max-count', parsed['max-count']),
      maxDays: wholeNumber('max-days', parsed['max-days']),
      batchSize: wholeNumber('batch-size', parsed['batch-size']),
    };
    const bad = Object.values(numbers).find((v) => typeof v === 'string');
    if (bad) {
      process.stderr.write(`${bad}\n\n${USAGE}`);
      return 2;
    }
    const policy = { ...(numbers as { maxCount: number | null; maxDays: number | null; batchSize: number | null }), all: parsed.all };
    const issues = validateRetentionPolicy(policy).list;
    if (issues.length) {
      const flag = (name: string) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      const lines = issues.map((i) =>
        i.path.length
          ? `${flag(i.path[i.path.length - 1])}: ${i.message
              .replace(/use all$/, 'use --all')
              .replace(/without maxCount and maxDays/, 'without --max-count and --max-days')}`
          : 'give --max-count, --max-days or both (or --all, to delete every row)',
      );
      process.stderr.write(`${lines.join('\n')}\n\n${USAGE}`);
      return 2;
    }

    const config = loadCliConfig();
    if (!config) return 1;
    const out = (line: string) => process.stdout.write(`${line}\n`);
    const { db, close } = await openServiceDatabase(config);
    try {
      const dryRun = parsed['dry-run'];
      const result = await truncateLogs(db.pool, policy, {
        dryRun,
        onPlan(plan) {
          const rules = [
            policy.all && `all log rows${plan.cutoffId ? ` (ids up to ${plan.cutoffId})` : ''}`,
            policy.maxCount !== null && `beyond the newest ${policy.maxCount} row${policy.maxCount === 1 ? '' : 's'}${plan.cutoffId ? ` (ids up to ${plan.cutoffId})` : ''}`,
            policy.maxDays !== null && `older than ${policy.maxDays} days (before ${iso(plan.cutoffTime)})`,
          ].filter(Boolean);
          out(`${policy.all ? '' : 'log rows '}${rules.join(' or ')}: ${plan.count}${plan.count ? ` (${span(plan)})` : ''}`);
        },
        onBatch: (batch) => out(`deleted ${batch.count} rows (${span(batch)})`),
      });
      out(dryRun ? `dry run: would delete ${result.count} log rows` : `deleted ${result.count} log rows in total`);
      return 0;
    } catch (error) {
      if (error instanceof ValidationError) {
        process.stderr.write(`${error.message}\n`);
        return 2;
      }
      throw error;
    } finally {
      await close();
    }
  },
};
