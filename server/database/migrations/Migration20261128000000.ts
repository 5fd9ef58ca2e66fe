import { Migration } from '@mikro-orm/migrations';

/** Tokens, their usage log and API keys. */
export class Migration20261128000000 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table "api_key" (
      "id" varchar(32) not null primary key,
      "name" varchar(100) not null,
      "secret_hash" varchar(64) not null,
      "permissions" text[] not null,
      "created_at" timestamptz not null default now(),
      "last_used_at" timestamptz null,
      "expires_at" timestamptz null,
      "revoked_at" timestamptz null
    );`);

    this.addSql(`create table "request_token" (
      "id" bigserial primary key,
      "scope" varchar(100) not null,
      "target_url" text null,
      "target_host" text null,
      "target_path" text null,
      "target_params" jsonb null,
      "user_id" varchar(255) null,
      "login_mode" text not null default 'NONE' check ("login_mode" in ('NONE', 'REQUEST', 'SESSION')),
      "data" jsonb null,
      "max_uses" int not null check ("max_uses" >= 1),
      "used_to_date" int not null default 0 check ("used_to_date" >= 0),
      "issued_at" timestamptz not null default now(),
      "not_before" timestamptz null,
      "expires_at" timestamptz null,
      "revoked_at" timestamptz null
    );`);
    this.addSql(`create index "request_token_scope_index" on "request_token" ("scope");`);
    this.addSql(`create index "request_token_user_id_index" on "request_token" ("user_id");`);
    this.addSql(`create index "request_token_issued_at_index" on "request_token" ("issued_at");`);

    this.addSql(`create table "request_token_log" (
      "id" bigserial primary key,
      "token_id" bigint null references "request_token" ("id") on update cascade on delete set null,
      "error_code" varchar(40) null,
      "user_id" varchar(255) null,
      "client_ip" varchar(45) null,
      "user_agent" varchar(512) null,
      "status_code" smallint null,
      "timestamp" timestamptz not null default now()
    );`);
    this.addSql(`create index "request_token_log_token_id_index" on "request_token_log" ("token_id", "id");`);
    this.addSql(`create index "request_token_log_timestamp_index" on "request_token_log" ("timestamp");`);
    this.addSql(`create index "request_token_log_user_id_index" on "request_token_log" ("user_id");`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "request_token_log";`);
    this.addSql(`drop table if exists "request_token";`);
    this.addSql(`drop table if exists "api_key";`);
  }
}
