import { Migration } from '@mikro-orm/migrations';

/**
 * The log partitioned by month (issue 14), with the keys the lead decided for partitioning and Citus alike:
 * `request_token_log` becomes `PARTITION BY RANGE ("timestamp")`, one partition per calendar month (UTC) named
 * `request_token_log_yYYYYmMM`, primary key ("token_id", "id", "timestamp"), token_id not null (0 for refusals no token
 * owns, which were null), no foreign key to request_token. The idempotency table's foreign key to the log goes; it
 * keeps the log row's timestamp beside its id. Hand-written: MikroORM cannot express partitioning (see the entity).
 *
 * Existing rows are copied across inside the migration's transaction (the table is locked meanwhile: on a large log,
 * plan the upgrade for a quiet hour). Partitions are created for every month the existing rows need, through three
 * months ahead of now; the service keeps them ahead from then on (server/domain/log-partitions.ts).
 */
export class Migration20261130090000_log_partitioned_by_month extends Migration {

  override async up(): Promise<void> {
    // The idempotency keys learn their log row's timestamp before the old table goes.
    this.addSql(`alter table "request_token_idempotency" drop constraint "request_token_idempotency_log_id_fkey";`);
    this.addSql(`drop index "request_token_idempotency_log_id_index";`);
    this.addSql(`alter table "request_token_idempotency" add column "log_timestamp" timestamptz null;`);
    this.addSql(`update "request_token_idempotency" k set "log_timestamp" = l."timestamp" from "request_token_log" l where l."id" = k."log_id";`);
    this.addSql(`alter table "request_token_idempotency" alter column "log_timestamp" set not null;`);
    this.addSql(`create index "request_token_idempotency_log_timestamp_index" on "request_token_idempotency" ("log_timestamp");`);

    // The old table steps aside (its index names are freed for the new one); its id sequence carries on.
    this.addSql(`alter table "request_token_log" rename to "request_token_log_unpartitioned";`);
    this.addSql(`alter table "request_token_log_unpartitioned" drop constraint "request_token_log_pkey";`);
    this.addSql(`drop index "request_token_log_token_id_index", "request_token_log_timestamp_index",
      "request_token_log_user_id_index", "request_token_log_client_id_index";`);
    this.addSql(`alter sequence "request_token_log_id_seq" owned by none;`);
    // PostgreSQL 18 names NOT NULL constraints after the table (request_token_log_id_not_null): free those names too.
    // Earlier versions keep no such constraints, and this finds none.
    this.addSql(`do $$
      declare r record;
      begin
        for r in select conname from pg_constraint
                 where conrelid = '"request_token_log_unpartitioned"'::regclass and contype = 'n' loop
          execute format('alter table "request_token_log_unpartitioned" rename constraint %I to %I', r.conname, 'old_' || r.conname);
        end loop;
      end $$;`);

    this.addSql(`create table "request_token_log" (
      "token_id" bigint not null,
      "id" bigint not null default nextval('request_token_log_id_seq'::regclass),
      "timestamp" timestamptz not null default now(),
      "error_code" varchar(40) null,
      "user_id" varchar(255) null,
      "client_ip" varchar(45) null,
      "user_agent" varchar(512) null,
      "status_code" smallint null,
      "released_at" timestamptz null,
      "client_id" bigint null,
      constraint "request_token_log_pkey" primary key ("token_id", "id", "timestamp")
    ) partition by range ("timestamp");`);
    this.addSql(`alter sequence "request_token_log_id_seq" owned by "request_token_log"."id";`);
    this.addSql(`create index "request_token_log_id_index" on "request_token_log" ("id");`);
    this.addSql(`create index "request_token_log_timestamp_index" on "request_token_log" ("timestamp");`);
    this.addSql(`create index "request_token_log_user_id_index" on "request_token_log" ("user_id");`);
    this.addSql(`create index "request_token_log_client_id_index" on "request_token_log" ("client_id", "id");`);
    this.addSql(`alter table "request_token_log" add constraint "request_token_log_client_id_fkey" foreign key ("client_id") references "api_client" ("id") on update no action on delete no action;`);

    // One partition per month (UTC) from the oldest row's through three months ahead of now.
    this.addSql(`do $$
      declare
        month timestamp := date_trunc('month', coalesce(
          (select min("timestamp") from "request_token_log_unpartitioned"), now()) at time zone 'UTC');
        last timestamp := date_trunc('month', now() at time zone 'UTC') + interval '3 months';
      begin
        while month <= last loop
          execute format('create table %I partition of "request_token_log" for values from (%L) to (%L)',
            to_char(month, '"request_token_log_y"YYYY"m"MM'),
            (month at time zone 'UTC')::text, ((month + interval '1 month') at time zone 'UTC')::text);
          month := month + interval '1 month';
        end loop;
      end $$;`);
    this.addSql(`insert into "request_token_log"
      ("token_id", "id", "timestamp", "error_code", "user_id", "client_ip", "user_agent", "status_code", "released_at", "client_id")
      select coalesce("token_id", 0), "id", "timestamp", "error_code", "user_id", "client_ip", "user_agent", "status_code",
        "released_at", "client_id"
      from "request_token_log_unpartitioned";`);
    this.addSql(`drop table "request_token_log_unpartitioned";`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "request_token_log" rename to "request_token_log_partitioned";`);
    this.addSql(`alter table "request_token_log_partitioned" drop constraint "request_token_log_pkey";`);
    this.addSql(`drop index "request_token_log_id_index", "request_token_log_timestamp_index",
      "request_token_log_user_id_index", "request_token_log_client_id_index";`);
    this.addSql(`alter sequence "request_token_log_id_seq" owned by none;`);
    this.addSql(`create table "request_token_log" (
      "id" bigint not null default nextval('request_token_log_id_seq'::regclass) primary key,
      "token_id" bigint null references "request_token" ("id") on update cascade on delete set null,
      "error_code" varchar(40) null,
      "user_id" varchar(255) null,
      "client_ip" varchar(45) null,
      "user_agent" varchar(512) null,
      "status_code" smallint null,
      "timestamp" timestamptz not null default now(),
      "client_id" bigint null references "api_client" ("id"),
      "released_at" timestamptz null
    );`);
    this.addSql(`alter sequence "request_token_log_id_seq" owned by "request_token_log"."id";`);
    this.addSql(`insert into "request_token_log" ("id", "token_id", "error_code", "user_id", "client_ip", "user_agent",
      "status_code", "timestamp", "client_id", "released_at")
      select "id", nullif("token_id", 0), "error_code", "user_id", "client_ip", "user_agent", "status_code", "timestamp",
        "client_id", "released_at"
      from "request_token_log_partitioned";`);
    this.addSql(`drop table "request_token_log_partitioned";`);
    this.addSql(`create index "request_token_log_token_id_index" on "request_token_log" ("token_id", "id");`);
    this.addSql(`create index "request_token_log_timestamp_index" on "request_token_log" ("timestamp");`);
    this.addSql(`create index "request_token_log_user_id_index" on "request_token_log" ("user_id");`);
    this.addSql(`create index "request_token_log_client_id_index" on "request_token_log" ("client_id", "id");`);
    this.addSql(`delete from "request_token_idempotency" k where not exists (select 1 from "request_token_log" l where l."id" = k."log_id");`);
    this.addSql(`drop index "request_token_idempotency_log_timestamp_index";`);
    this.addSql(`alter table "request_token_idempotency" drop column "log_timestamp";`);
    this.addSql(`create index "request_token_idempotency_log_id_index" on "request_token_idempotency" ("log_id");`);
    this.addSql(`alter table "request_token_idempotency" add constraint "request_token_idempotency_log_id_fkey" foreign key ("log_id") references "request_token_log" ("id") on update cascade on delete cascade;`);
  }

}
