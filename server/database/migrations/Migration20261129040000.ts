import { Migration } from '@mikro-orm/migrations';

/**
 * Reliability: a released use is marked on its log row, and idempotency keys of successful redemptions live in their
 * own small table. Not on the log table, so the log can be partitioned by month (a unique index on a partitioned table
 * must contain the partition column) and so keys can be pruned independently of log retention.
 */
export class Migration20261129040000 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "request_token_log" add column "released_at" timestamptz null;`);
    this.addSql(`create table "request_token_idempotency" (
      "token_id" bigint not null references "request_token" ("id") on update cascade on delete cascade,
      "key" varchar(255) not null,
      "fingerprint" varchar(64) not null,
      "log_id" bigint not null references "request_token_log" ("id") on update cascade on delete cascade,
      "created_at" timestamptz not null default now(),
      primary key ("token_id", "key")
    );`);
    this.addSql(`create index "request_token_idempotency_log_id_index" on "request_token_idempotency" ("log_id");`);
    this.addSql(`create index "request_token_idempotency_created_at_index" on "request_token_idempotency" ("created_at");`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "request_token_idempotency";`);
    this.addSql(`alter table "request_token_log" drop column if exists "released_at";`);
  }
}
