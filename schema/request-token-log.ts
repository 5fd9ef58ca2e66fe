import { NotFoundError, ValidationError } from '../server/domain/errors.js';
import { getTokens, type TokenRecord } from '../server/domain/tokens.js';
import { listLogs, listLogsOfTokens, recordResponseStatus, type LogRecord } from '../server/domain/logs.js';
import { createContextCache } from '@pothos/core';
import DataLoader from 'dataloader';
import type { Context } from '../server/context.js';
import { builder } from './builder.js';
import { ErrorCodeEnum } from './errors.js';
import { connectionType, pageCost, selectedFieldNames, selectsTotalCount } from './paging.js';
import { asQueryError, RequestTokenRef, tokenProjectionFor } from './request-token.js';
import { DateTime } from './scalars.js';

/** The request's tokens by id, loaded together (a dataloader per request context). */
const tokenLoader = createContextCache(
  (ctx: Context) =>
    new DataLoader<string, TokenRecord | null>(async (ids) => {
      const found = await getTokens(ctx, ids);
      return ids.map((id) => found.get(id) ?? null);
    }),
);

export const RequestTokenLogRef = builder.objectRef<LogRecord>('RequestTokenLog').implement({
  description: 'One attempt to redeem a token, successful or not.',
  fields: (t) => ({
    id: t.exposeID('id'),
    token: t.field({
      type: RequestTokenRef,
      nullable: true,
      description: 'Null when the JWT could not be tied to a stored token.',
      // A page of requestTokenLogs read each row's token with it (logs.ts), as much of it as the query selects
      // (tokenProjectionFor: a brief token only where nothing else is selected). Other log rows (nested pages, a
      // recorded status) load theirs together: one query per request, each token at most once.
      resolve: (log, _args, ctx) =>
        log.token !== undefined
          ? (log.token as TokenRecord | null)
          : log.tokenId === null
            ? null
            : tokenLoader(ctx).load(log.tokenId),
    }),
    errorCode: t.expose('errorCode', {
      type: ErrorCodeEnum,
      nullable: true,
      description: "Null on success; the refusal's code otherwise.",
    }),
    userId: t.exposeString('userId', {
      nullable: true,
      description: 'The user that the client application reported as signed in, if any.',
    }),
    clientIp: t.exposeString('clientIp', { nullable: true }),
    userAgent: t.exposeString('userAgent', { nullable: true }),
    statusCode: t.exposeInt('statusCode', {
      nullable: true,
      description: 'The HTTP status the client application answered with, once recorded.',
    }),
    timestamp: t.expose('timestamp', { type: DateTime }),
    releasedAt: t.expose('releasedAt', {
      type: DateTime,
      nullable: true,
      description: "When recordResponseStatus gave this redemption's use back (releaseUse); null otherwise.",
    }),
  }),
});

const RequestTokenLogConnection = connectionType('RequestTokenLog', RequestTokenLogRef);

builder.objectField(RequestTokenRef, 'logs', (t) =>
  t.loadable({
    type: RequestTokenLogConnection,
    args: { first: t.arg.int(), after: t.arg.string() },
    complexity: pageCost,
    // One loader per place in the query (and so per arguments): the pages of every token there load together.
    byPath: true,
    load: async (tokenIds: string[], ctx, { first, after }) => {
      const pages = await asQueryError(() => listLogsOfTokens(ctx, tokenIds, { first, after }));
      return tokenIds.map((id) => pages.get(id)!);
    },
    resolve: (token) => token.id,
  }),
);

const RequestTokenLogFilter = builder.inputType('RequestTokenLogFilter', {
  fields: (t) => ({
    tokenId: t.id(),
    scope: t.string(),
    userId: t.string(),
    statusCode: t.int(),
    failed: t.boolean({ description: 'Only successes (false) or only refusals (true).' }),
    since: t.field({ type: DateTime }),
    until: t.field({ type: DateTime }),
  }),
});

builder.queryField('requestTokenLogs', (t) =>
  t.field({
    type: RequestTokenLogConnection,
    args: { filter: t.arg({ type: RequestTokenLogFilter }), first: t.arg.int(), after: t.arg.string() },
    complexity: pageCost,
    resolve: (_root, { filter, first, after }, ctx, info) =>
      asQueryError(() =>
        listLogs(
          ctx,
          { ...filter, tokenId: filter?.tokenId == null ? null : String(filter.tokenId) },
          { first, after, count: selectsTotalCount(info) },
          tokenProjectionFor(selectedFieldNames(info, ['edges', 'node', 'token'])),
        ),
      ),
  }),
);

const RecordResponseStatusInput = builder.inputType('RecordResponseStatusInput', {
  fields: (t) => ({
    redemptionId: t.id({ required: true }),
    statusCode: t.int({ required: true }),
    releaseUse: t.boolean({
      defaultValue: false,
      description:
        "Give the redemption's use back to the token because the application failed to serve the request; only with a " +
        'statusCode of 500–599 and only for a successful redemption. Done once: repeating it changes nothing.',
    }),
  }),
});

const RecordResponseStatusSuccess = builder.objectRef<{ log: LogRecord }>('RecordResponseStatusSuccess').implement({
  fields: (t) => ({ log: t.field({ type: RequestTokenLogRef, resolve: (r) => r.log }) }),
});

builder.mutationField('recordResponseStatus', (t) =>
  t.field({
    type: RecordResponseStatusSuccess,
    errors: { types: [NotFoundError, ValidationError], union: { name: 'RecordResponseStatusResult' } },
    args: { input: t.arg({ type: RecordResponseStatusInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const log = await recordResponseStatus(ctx, {
        redemptionId: String(input.redemptionId),
        statusCode: input.statusCode,
        releaseUse: input.releaseUse,
      });
      return { log };
    },
  }),
);
