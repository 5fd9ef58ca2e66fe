import { Migration } from '@mikro-orm/migrations';

export class Migration20261130084216_request_token_scope_index extends Migration {

  override async up(): Promise<void> {
    this.addSql(`drop index "request_token_scope_index";`);
  }

  override async down(): Promise<void> {
    this.addSql(`create index "request_token_scope_index" on "request_token" ("scope");`);
  }

}
