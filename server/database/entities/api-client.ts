import { defineEntity, p, type InferEntity } from '@mikro-orm/core';

/** A tenant: an application that owns its tokens and holds one or more API keys. Client 1 is "default". */
export const ApiClient = defineEntity({
  name: 'ApiClient',
  tableName: 'api_client',
  properties: {
    id: p.bigint('string').primary().autoincrement(),
    name: p.string().length(100).unique('api_client_name_key'),
    createdAt: p.datetime().defaultRaw('now()'),
  },
});

export type ApiClient = InferEntity<typeof ApiClient>;

export const DEFAULT_CLIENT_ID = '1';
