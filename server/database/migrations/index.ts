import type { MigrationObject } from '@mikro-orm/core';
import { Migration20261128000000 } from './Migration20261128000000.js';
import { Migration20261129010000 } from './Migration20261129010000.js';
import { Migration20261129020000 } from './Migration20261129020000.js';
import { Migration20261129040000 } from './Migration20261129040000.js';
import { Migration20261130054636_signing_key_enums_as_text } from './Migration20261130054636_signing_key_enums_as_text.js';
import { Migration20261130083643_usage_rollups } from './Migration20261130083643_usage_rollups.js';
import { Migration20261130084216_request_token_scope_index } from './Migration20261130084216_request_token_scope_index.js';
import { Migration20261130090000_log_partitioned_by_month } from './Migration20261130090000_log_partitioned_by_month.js';
import { Migration20261130091000_idempotency_token_fk_no_update_cascade } from './Migration20261130091000_idempotency_token_fk_no_update_cascade.js';
import { Migration20261130114512_usage_rollup_day } from './Migration20261130114512_usage_rollup_day.js';
import { Migration20261130122533_request_token_user_id_id_index } from './Migration20261130122533_request_token_user_id_id_index.js';
import { Migration20261130124209_log_user_id_id_index } from './Migration20261130124209_log_user_id_id_index.js';
import { Migration20261130125500_request_token_fillfactor } from './Migration20261130125500_request_token_fillfactor.js';
import { Migration20261130144255_listing_indexes } from './Migration20261130144255_listing_indexes.js';

/**
 * Every migration, in order. Listed explicitly so they run the same under tsx, vitest and a build.
 * `npm run migration:create` rewrites this file from the folder (run it after adding a migration by hand too).
 */
export const migrationsList: MigrationObject[] = [
  { name: 'Migration20261128000000', class: Migration20261128000000 },
  { name: 'Migration20261129010000', class: Migration20261129010000 },
  { name: 'Migration20261129020000', class: Migration20261129020000 },
  { name: 'Migration20261129040000', class: Migration20261129040000 },
  { name: 'Migration20261130054636_signing_key_enums_as_text', class: Migration20261130054636_signing_key_enums_as_text },
  { name: 'Migration20261130083643_usage_rollups', class: Migration20261130083643_usage_rollups },
  { name: 'Migration20261130084216_request_token_scope_index', class: Migration20261130084216_request_token_scope_index },
  { name: 'Migration20261130090000_log_partitioned_by_month', class: Migration20261130090000_log_partitioned_by_month },
  { name: 'Migration20261130091000_idempotency_token_fk_no_update_cascade', class: Migration20261130091000_idempotency_token_fk_no_update_cascade },
  { name: 'Migration20261130114512_usage_rollup_day', class: Migration20261130114512_usage_rollup_day },
  { name: 'Migration20261130122533_request_token_user_id_id_index', class: Migration20261130122533_request_token_user_id_id_index },
  { name: 'Migration20261130124209_log_user_id_id_index', class: Migration20261130124209_log_user_id_id_index },
  { name: 'Migration20261130125500_request_token_fillfactor', class: Migration20261130125500_request_token_fillfactor },
  { name: 'Migration20261130144255_listing_indexes', class: Migration20261130144255_listing_indexes },
];
