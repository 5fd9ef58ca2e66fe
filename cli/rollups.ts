import { loadCliConfig } from './connect.js';
import { compactRollups, rebuildRollups, type CompactionResult } from '../server/domain/usage-rollups.js';
import { parseOwnOptions, type Command } from './command.js';
import { count } from './service.js';
import { ROLLUPS_COMPACT_USAGE, ROLLUPS_REBUILD_USAGE } from './usage.js';
import { openServiceDatabase } from './database.js';

function report(result: CompactionResult): number {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  if (result.skipped) {
    out('another compaction is running (a service instance, or this command elsewhere): nothing done');
    return 0;
  }
  out(`rolled up ${count(result.minutes, 'minute')}, rebuilt ${count(result.rebuilt, 'stale hour')}`);
  out(`compacted until ${result.compactedUntil ? result.compactedUntil.toISOString() : '- (nothing yet)'}`);
  if (result.waitedOut) {
    process.stderr.write(
      'transactions older than the seal were still running after 60 s: the watermark did not move (run again later)\n',
    );
    return 1;
  }
  return 0;
}

export const rollupsCompact: Pick<Command, 'run'> = {
  async run(args) {
    const options = parseOwnOptions(args, {}, ROLLUPS_COMPACT_USAGE);
    if ('exit' in options) return options.exit;
    const config = loadCliConfig();
    if (!config) return 1;
    const { db, close } = await openServiceDatabase(config);
    try {
      return report(await compactRollups(db.pool));
    } finally {
      await close();
    }
  },
};

export const rollupsRebuild: Pick<Command, 'run'> = {
  async run(args) {
    const options = parseOwnOptions(args, { since: { type: 'string' }, until: { type: 'string' } }, ROLLUPS_REBUILD_USAGE);
    if ('exit' in options) return options.exit;
    const range: { since: Date | null; until: Date | null } = { since: null, until: null };
    for (const name of ['since', 'until'] as const) {
      const raw = options.values[name];
      if (raw === undefined) continue;
      const at = new Date(raw);
      if (Number.isNaN(at.getTime()) || !/^\d{4}-\d\d-\d\d/.test(raw)) {
        process.stderr.write(`--${name} must be a date and time (2026-11-01T00:00:00Z), got "${raw}"\n\n${ROLLUPS_REBUILD_USAGE}`);
        return 2;
      }
      range[name] = at;
    }
    if (range.since && range.until && range.since >= range.until) {
      process.stderr.write(`--until must be after --since\n\n${ROLLUPS_REBUILD_USAGE}`);
      return 2;
    }
    const config = loadCliConfig();
    if (!config) return 1;
    const { db, close } = await openServiceDatabase(config);
    try {
      const result = await rebuildRollups(db.pool, range);
      process.stdout.write(`marked ${count(result.marked, 'hour')} stale\n`);
      return report(result);
    } finally {
      await close();
    }
  },
};
