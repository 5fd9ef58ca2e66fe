import { ValidationError } from '../server/domain/errors.js';
import { truncateLogs, type DoomedRows } from '../server/domain/log-retention.js';
import { builder } from './builder.js';
import { DateTime } from './scalars.js';

const TruncateRequestTokenLogsSuccess = builder.objectRef<DoomedRows>('TruncateRequestTokenLogsSuccess').implement({
  fields: (t) => ({
    deletedCount: t.int({ resolve: (d) => d.count }),
    oldestDeleted: t.expose('oldest', { type: DateTime, nullable: true }),
    newestDeleted: t.expose('newest', { type: DateTime, nullable: true }),
  }),
});

builder.mutationField('truncateRequestTokenLogs', (t) =>
  t.field({
    type: TruncateRequestTokenLogsSuccess,
    description:
      'Deletes log rows beyond the newest maxCount and/or older than maxDays days (or all of them), oldest first, in batches. Also: `npx request-token logs truncate`.',
    errors: { types: [ValidationError], union: { name: 'TruncateRequestTokenLogsResult' } },
    args: {
      maxCount: t.arg.int({ description: 'Keep at most this many rows, the newest.' }),
      maxDays: t.arg.int({ description: 'Keep only rows from the last this many days (24-hour periods).' }),
      all: t.arg.boolean({
        description: 'Delete every row (alone, without maxCount and maxDays). 0 for maxCount or maxDays is refused.',
      }),
    },
    // The answer comes once the rows are out of the log; the files of a month dropped whole are removed after it,
    // by the service (its partition upkeep waits for that on shutdown; the next retention drops what a crash left).
    resolve: (_root, { maxCount, maxDays, all }, ctx) =>
      truncateLogs(ctx.pool, { maxCount, maxDays, all }, {
        dropInBackground: ctx.logPartitions
          ? (drop) => ctx.logPartitions!.track(drop, 'dropping a month of the log after retention')
          : undefined,
      }),
  }),
);
