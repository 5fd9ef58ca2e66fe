import { citusLayoutLine } from '../server/database/citus.js';
import { distributeForCitus } from '../server/domain/citus.js';
import { parseOwnOptions, type Command } from './command.js';
import { withDatabase } from './connect.js';
import { CITUS_DISTRIBUTE_USAGE as USAGE } from './usage.js';

export const citusDistribute: Pick<Command, 'run'> = {
  async run(args) {
    const options = parseOwnOptions(args, {}, USAGE);
    if ('exit' in options) return options.exit;
    return withDatabase(async (db) => {
      const out = (line: string) => process.stdout.write(`${line}\n`);
      const layout = await distributeForCitus(db.pool, out);
      out(citusLayoutLine(layout));
      return 0;
    });
  },
};
