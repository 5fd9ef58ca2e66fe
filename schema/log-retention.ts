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
      'Deletes log rows beyond the newest maxCount and/or older than maxDays days, oldest first, in batches. Also: `npx request-token logs truncate`.',
    errors: { types: [ValidationError], union: { name: 'TruncateRequestTokenLogsResult' } },
    args: {
      maxCount: t.arg.int({ description: 'Keep at most this many rows, the newest.' }),
      maxDays: t.arg.int({ description: 'Keep only rows from the last this many days (24-hour periods).' }),
    },
    resolve: (_root, { maxCount, maxDays }, ctx) => truncateLogs(ctx.pool, { maxCount, maxDays }),
  }),
);
