import { Migration } from '@mikro-orm/migrations';

// A user's attempts newest first read in (user_id, id) order. With (user_id) alone, a page of the most active user's
// log rows either fetched and sorted every row of that user or walked the id index backwards past other users' rows
// (93.6 ms p50 through the API at 10 million rows, BENCHMARKS.md "Scale"). The index is built on every month's
// partition in the migration's transaction, which holds writes to the log meanwhile (bench:scale's seed builds each
// of the log's indexes at about a second per million rows).
export class Migration20261130124209_log_user_id_id_index extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create index "request_token_log_user_id_id_index" on "request_token_log" ("user_id", "id");`);

    this.addSql(`drop index "request_token_log_user_id_index";`);
  }

  override async down(): Promise<void> {
    this.addSql(`create index "request_token_log_user_id_index" on "request_token_log" ("user_id");`);

    this.addSql(`drop index "request_token_log_user_id_id_index";`);
  }

}
