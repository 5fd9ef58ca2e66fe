import { Migration } from '@mikro-orm/migrations';

// Every redemption writes a new version of its token's row. With room on the row's page the new version stays there
// (a HOT update: no index entry written for it, the old version pruned from the page); on a full page it moves, and
// each of the table's indexes gets an entry. Pages were filled to 100 %: in bench:scale's 1-million-token database
// only 14 % of the redemptions' updates were HOT (74 % on the small one, which autovacuum reached during the run).
// 90 % leaves a freshly issued token's page room for its next versions. A storage parameter, not a column, index or
// constraint: the entities do not carry it, and the schema comparison does not read it (test/schema-sync.test.ts).
// Pages already written keep their fill until they are rewritten.
export class Migration20261130125500_request_token_fillfactor extends Migration {

  override async up(): Promise<void> {
    this.addSql(`alter table "request_token" set (fillfactor = 90);`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "request_token" reset (fillfactor);`);
  }

}
