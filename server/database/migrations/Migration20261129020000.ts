import { Migration } from '@mikro-orm/migrations';

/**
 * Indexes for the dashboard operations. Usage statistics and bulk revocation filter tokens by scope and issue time
 * together; the log's own timestamp, token and primary-key indexes already serve statistics over time, a token's
 * history and retention.
 */
export class Migration20261129020000 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create index "request_token_scope_issued_at_index" on "request_token" ("scope", "issued_at");`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop index if exists "request_token_scope_issued_at_index";`);
  }
}
