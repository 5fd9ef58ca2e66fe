import { loadCliConfig } from './connect.js';
import { ValidationError } from '../server/domain/errors.js';
import { truncateLogs, validateRetentionPolicy, type DoomedRows } from '../server/domain/log-retention.js';
import { parseOwnOptions, type Command } from './command.js';
import { count } from './service.js';
import { LOGS_TRUNCATE_USAGE as USAGE } from './usage.js';
import { openServiceDatabase } from './database.js';


const iso = (d: Date | null) => (d ? d.toISOString() : '-');
const span = (r: DoomedRows) => `ids ${r.firstId}–${r.lastId}, ${iso(r.oldest)} … ${iso(r.newest)}`;

function wholeNumber(name: string, raw: string | undefined): number | null | string {
  if (raw === undefined) return null;
  return /^\d+$/.test(raw) ? Number(raw) : `--${name} must be a whole number, got "${raw}"`;
}

export const logsTruncate: Pick<Command, 'run'> = {
  async run(args) {
    const options = parseOwnOptions(
      args,
      {
        'max-count': { type: 'string' },
        'max-days': { type: 'string' },
        'batch-size': { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        all: { type: 'boolean', default: false },
      },
      USAGE,
    );
    if ('exit' in options) return options.exit;
    const parsed = options.values;
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
            policy.maxCount !== null && `beyond the newest ${count(policy.maxCount, 'row')}${plan.cutoffId ? ` (ids up to ${plan.cutoffId})` : ''}`,
            policy.maxDays !== null && `older than ${count(policy.maxDays, 'day')} (before ${iso(plan.cutoffTime)})`,
          ].filter(Boolean);
          out(`${policy.all ? '' : 'log rows '}${rules.join(' or ')}: ${plan.count}${plan.count ? ` (${span(plan)})` : ''}`);
        },
        onBatch: (batch) =>
          out(
            batch.droppedPartition
              ? `dropped ${batch.droppedPartition}, a whole month: ${count(batch.count, 'row')} (${span(batch)})`
              : `deleted ${count(batch.count, 'row')} (${span(batch)})`,
          ),
      });
      out(dryRun ? `dry run: would delete ${count(result.count, 'log row')}` : `deleted ${count(result.count, 'log row')} in total`);
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
