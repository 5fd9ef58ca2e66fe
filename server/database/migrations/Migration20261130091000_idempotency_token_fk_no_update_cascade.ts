import { Migration } from '@mikro-orm/migrations';

export class Migration20261130091000_idempotency_token_fk_no_update_cascade extends Migration {

  override async up(): Promise<void> {
    this.addSql(`alter table "request_token_idempotency" drop constraint "request_token_idempotency_token_id_fkey";`);

    this.addSql(`alter table "request_token_idempotency" add constraint "request_token_idempotency_token_id_fkey" foreign key ("token_id") references "request_token" ("id") on update no action on delete cascade;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "request_token_idempotency" drop constraint "request_token_idempotency_token_id_fkey";`);

    this.addSql(`alter table "request_token_idempotency" add constraint "request_token_idempotency_token_id_fkey" foreign key ("token_id") references "request_token" ("id") on update cascade on delete cascade;`);
  }

}
