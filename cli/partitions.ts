import { loadCliConfig } from './connect.js';
import { ensureComingLogPartitions, listLogPartitions } from '../server/domain/log-partitions.js';
import { parseOwnOptions, type Command } from './command.js';
import { PARTITIONS_ENSURE_USAGE as USAGE } from './usage.js';
import { openServiceDatabase } from './database.js';

export const partitionsEnsure: Pick<Command, 'run'> = {
  async run(args) {
    const options = parseOwnOptions(args, { months: { type: 'string' } }, USAGE);
    if ('exit' in options) return options.exit;
    const raw = options.values.months;
    if (raw !== undefined && !(/^\d+$/.test(raw) && Number(raw) >= 1 && Number(raw) <= 120)) {
      process.stderr.write(`--months must be a whole number from 1 to 120, got "${raw}"\n\n${USAGE}`);
      return 2;
    }
    const config = loadCliConfig();
    if (!config) return 1;
    const months = raw === undefined ? config.logPartitionsAhead : Number(raw);
    const { db, close } = await openServiceDatabase(config);
    try {
      const created = await ensureComingLogPartitions(db.pool, months);
      const out = (line: string) => process.stdout.write(`${line}\n`);
      out(created.length ? `created ${created.join(', ')}` : `nothing to create: every month through ${months} ahead exists`);
      const { rows } = await db.pool.query<{ name: string; rows: string }>(
        `select c.relname as name, greatest(c.reltuples, 0)::bigint::text as rows from pg_inherits i
         join pg_class c on c.oid = i.inhrelid where i.inhparent = 'request_token_log'::regclass`,
      );
      const estimates = new Map(rows.map((r) => [r.name, r.rows]));
      for (const p of await listLogPartitions(db.pool)) {
        out(`${p.name}  ${p.from.toISOString()} … ${p.to.toISOString()}  ~${estimates.get(p.name)} rows`);
      }
      return 0;
    } finally {
      await close();
    }
  },
};
