import { Migration } from '@mikro-orm/migrations';

// Two listings' indexes (issue 14's last bench:scale figures): a tenant's tokens of one scope newest first, read along
// (scope, client_id, id) instead of the primary key walked backwards past other scopes' newer tokens; and the log's
// (user_id, id) index carrying the row's client, so that the count of one user's rows under a tenant reads the index
// alone. The log's index is built on every partition in this transaction, which holds off writes to the log while it
// runs (about 10 s per 5 million rows on the development machine): longer than the service's statement timeout
// (DB_STATEMENT_TIMEOUT_MS, 5 s by default, which the migrator's connection carries), lifted for this migration's
// transaction only.
export class Migration20261130144255_listing_indexes extends Migration {

  override async up(): Promise<void> {
    this.addSql(`set local statement_timeout = 0;`);
    this.addSql(`create index "request_token_scope_client_id_id_index" on "request_token" ("scope", "client_id", "id");`);

    this.addSql(`drop index "request_token_log_user_id_id_index";`);

    this.addSql(`create index "request_token_log_user_id_id_client_id_index" on "request_token_log" ("user_id", "id") include ("client_id");`);
  }

  override async down(): Promise<void> {
    this.addSql(`set local statement_timeout = 0;`);
    this.addSql(`drop index "request_token_scope_client_id_id_index";`);

    this.addSql(`drop index "request_token_log_user_id_id_client_id_index";`);

    this.addSql(`create index "request_token_log_user_id_id_index" on "request_token_log" ("user_id", "id");`);
  }

}
