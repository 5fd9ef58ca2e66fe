import { Migration } from '@mikro-orm/migrations';

/**
 * Tenants (API clients), client-scoped keys, tokens and log rows, and the signing-key ring.
 *
 * The single-tenant setup maps onto client 1, "default": it owns every existing token and log row, and existing
 * non-admin keys join it. Admin keys belong to no client (they see every tenant). The default signing key "default"
 * is REQUEST_TOKEN_SECRET itself (HS256, never stored); tokens without a `kid` verify with it.
 */
export class Migration20261129010000 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table "api_client" (
      "id" bigserial primary key,
      "name" varchar(100) not null unique,
      "created_at" timestamptz not null default now()
    );`);
    this.addSql(`insert into "api_client" ("id", "name") values (1, 'default');`);
    this.addSql(`select setval(pg_get_serial_sequence('api_client', 'id'), 1);`);

    this.addSql(`alter table "api_key" add column "client_id" bigint null references "api_client" ("id");`);
    this.addSql(`alter table "api_key" add column "rate_limit_per_minute" int null check ("rate_limit_per_minute" >= 0);`);
    this.addSql(`update "api_key" set "client_id" = 1 where not ('admin' = any("permissions"));`);
    this.addSql(`alter table "api_key" add constraint "api_key_client_or_admin"
      check ("client_id" is not null or 'admin' = any("permissions"));`);

    // No default is kept: every insert must say whose token it is.
    this.addSql(`alter table "request_token" add column "client_id" bigint not null default 1 references "api_client" ("id");`);
    this.addSql(`alter table "request_token" alter column "client_id" drop default;`);
    this.addSql(`alter table "request_token" add column "kid" varchar(64) null;`);
    this.addSql(`create index "request_token_client_id_index" on "request_token" ("client_id", "id");`);

    this.addSql(`alter table "request_token_log" add column "client_id" bigint null references "api_client" ("id");`);
    this.addSql(`update "request_token_log" l set "client_id" = coalesce(
      (select t."client_id" from "request_token" t where t."id" = l."token_id"), 1);`);
    this.addSql(`create index "request_token_log_client_id_index" on "request_token_log" ("client_id", "id");`);

    this.addSql(`create table "signing_key" (
      "kid" varchar(64) primary key,
      "algorithm" varchar(10) not null check ("algorithm" in ('HS256', 'EdDSA', 'ES256')),
      "state" varchar(10) not null check ("state" in ('active', 'verify', 'retired')),
      "encrypted_key" text null,
      "public_jwk" jsonb null,
      "created_at" timestamptz not null default now(),
      "retired_at" timestamptz null
    );`);
    this.addSql(`create unique index "signing_key_one_active" on "signing_key" ("state") where "state" = 'active';`);
    this.addSql(`insert into "signing_key" ("kid", "algorithm", "state") values ('default', 'HS256', 'active');`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "signing_key";`);
    this.addSql(`alter table "request_token_log" drop column "client_id";`);
    this.addSql(`alter table "request_token" drop column "kid";`);
    this.addSql(`alter table "request_token" drop column "client_id";`);
    this.addSql(`alter table "api_key" drop constraint "api_key_client_or_admin";`);
    this.addSql(`alter table "api_key" drop column "rate_limit_per_minute";`);
    this.addSql(`alter table "api_key" drop column "client_id";`);
    this.addSql(`drop table if exists "api_client";`);
  }
}
