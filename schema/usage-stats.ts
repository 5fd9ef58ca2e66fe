import { STATS_BUCKETS, STATS_TIME_ZONE, usageStats, type ResponseStatusCounts, type ScopeUsage, type UsageBucket, type UsageCounts, type UsageStats } from '../server/domain/usage-stats.js';
import { builder } from './builder.js';
import { ErrorCodeEnum } from './errors.js';
import { asQueryError } from './request-token.js';
import { DateTime } from './scalars.js';

export const StatsBucketEnum = builder.enumType('StatsBucket', {
  description: `The width of a usage-statistics bucket. Buckets are cut on ${STATS_TIME_ZONE} boundaries.`,
  values: STATS_BUCKETS,
});

const ErrorCodeCountRef = builder.objectRef<{ code: UsageCounts['refusalsByCode'][number]['code']; count: number }>('ErrorCodeCount').implement({
  fields: (t) => ({
    code: t.expose('code', { type: ErrorCodeEnum }),
    count: t.exposeInt('count'),
  }),
});

const ResponseStatusCountsRef = builder.objectRef<ResponseStatusCounts>('ResponseStatusCounts').implement({
  description: 'Redemption attempts by the HTTP status class that the client application recorded for them.',
  fields: (t) => ({
    status1xx: t.exposeInt('status1xx'),
    status2xx: t.exposeInt('status2xx'),
    status3xx: t.exposeInt('status3xx'),
    status4xx: t.exposeInt('status4xx'),
    status5xx: t.exposeInt('status5xx'),
    unrecorded: t.exposeInt('unrecorded', { description: 'Attempts with no recorded status (recordResponseStatus).' }),
  }),
});

const UsageCountsInterface = builder.interfaceRef<UsageCounts>('UsageCounts').implement({
  description: 'What happened within a bucket, a scope or the whole window.',
  fields: (t) => ({
    issued: t.exposeInt('issued', { description: 'Tokens issued.' }),
    redemptions: t.exposeInt('redemptions', { description: 'Successful redemptions (released ones included).' }),
    released: t.exposeInt('released', {
      description: 'Redemptions whose use went back to the token afterwards (recordResponseStatus with releaseUse).',
    }),
    refusals: t.exposeInt('refusals', { description: 'Refused redemption attempts.' }),
    refusalsByCode: t.field({
      type: [ErrorCodeCountRef],
      description: 'Refusals by reason, most frequent first; codes without refusals are left out.',
      resolve: (c) => c.refusalsByCode,
    }),
    responseStatuses: t.field({ type: ResponseStatusCountsRef, resolve: (c) => c.responseStatuses }),
  }),
});

const UsageBucketRef = builder.objectRef<UsageBucket>('UsageBucket').implement({
  description: 'One time bucket [start, end); the first and last are clipped to the window.',
  interfaces: [UsageCountsInterface],
  fields: (t) => ({
    start: t.expose('start', { type: DateTime }),
    end: t.expose('end', { type: DateTime }),
  }),
});

const ScopeUsageRef = builder.objectRef<ScopeUsage>('ScopeUsage').implement({
  interfaces: [UsageCountsInterface],
  fields: (t) => ({
    scope: t.exposeString('scope', {
      nullable: true,
      description: 'Null for refusals whose JWT could not be tied to a stored token (malformed, foreign, unknown).',
    }),
  }),
});

const UsageTotalsRef = builder.objectRef<UsageCounts>('UsageTotals').implement({
  interfaces: [UsageCountsInterface],
  fields: () => ({}),
});

const UsageStatsRef = builder.objectRef<UsageStats>('UsageStats').implement({
  fields: (t) => ({
    bucket: t.expose('bucket', { type: StatsBucketEnum }),
    timeZone: t.exposeString('timeZone', { description: `The zone buckets are cut in: always "${STATS_TIME_ZONE}".` }),
    since: t.expose('since', { type: DateTime }),
    until: t.expose('until', { type: DateTime }),
    buckets: t.field({
      type: [UsageBucketRef],
      description: 'Every bucket of the window, oldest first, empty ones included.',
      resolve: (s) => s.buckets,
    }),
    totals: t.field({ type: UsageTotalsRef, resolve: (s) => s.totals }),
    scopes: t.field({
      type: [ScopeUsageRef],
      description: 'Totals per scope over the window, busiest first.',
      resolve: (s) => s.scopes,
    }),
  }),
});

const UsageStatsFilter = builder.inputType('UsageStatsFilter', {
  fields: (t) => ({
    scope: t.string(),
    since: t.field({
      type: DateTime,
      description: 'Inclusive. Default: the start of the bucket 47 hours (HOUR) or 29 days (DAY) before until.',
    }),
    until: t.field({ type: DateTime, description: 'Exclusive. Default: now.' }),
  }),
});

builder.queryField('usageStats', (t) =>
  t.field({
    type: UsageStatsRef,
    description: `Tokens issued, redemptions, refusals by code and recorded response statuses, per ${STATS_TIME_ZONE} hour or day and per scope.`,
    args: {
      filter: t.arg({ type: UsageStatsFilter }),
      bucket: t.arg({ type: StatsBucketEnum, required: true, defaultValue: 'DAY' }),
    },
    resolve: (_root, { filter, bucket }, ctx) => asQueryError(() => usageStats(ctx, filter ?? {}, bucket)),
  }),
);
