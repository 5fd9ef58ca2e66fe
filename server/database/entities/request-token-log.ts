import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import { RequestToken } from './request-token.js';

export const RequestTokenLog = defineEntity({
  name: 'RequestTokenLog',
  tableName: 'request_token_log',
  properties: {
    id: p.bigint('string').primary().autoincrement(),
    /** Null when the JWT could not be tied to a stored token. */
    token: () => p.manyToOne(RequestToken).nullable().ref().deleteRule('set null'),
    /** Null on success. */
    errorCode: p.string().length(40).nullable(),
    userId: p.string().length(255).nullable(),
    clientIp: p.string().length(45).nullable(),
    userAgent: p.string().length(512).nullable(),
    statusCode: p.smallint().nullable(),
    timestamp: p.datetime().defaultRaw('now()'),
    /** Set when recordResponseStatus gave this redemption's use back. */
    releasedAt: p.datetime().nullable(),
  },
});

export type RequestTokenLog = InferEntity<typeof RequestTokenLog>;
