import { defineConfig } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import { ApiClient } from './server/database/entities/api-client.js';
import { ApiKey } from './server/database/entities/api-key.js';
import { RequestToken } from './server/database/entities/request-token.js';
import { RequestTokenLog } from './server/database/entities/request-token-log.js';
import { RequestTokenIdempotency } from './server/database/entities/request-token-idempotency.js';
import { SigningKey } from './server/database/entities/signing-key.js';
import { UsageRollup, UsageRollupDay, UsageRollupStale, UsageRollupState } from './server/database/entities/usage-rollup.js';
import { migrationsList } from './server/database/migrations/index.js';

/**
 * The ORM's model and migrations, shared by the server (`server/database/db.ts`, which adds the connection from Config),
 * `npm run migration:create` (scripts/migration-create.ts) and the MikroORM CLI (`DATABASE_URL=… npm run mikro-orm -- …`).
 * The entities are the schema: test/schema-sync.test.ts fails when they and the migrations disagree.
 */
export function ormOptions(clientUrl: string | undefined, poolSize = 10) {
  return defineConfig({
    clientUrl,
    entities: [ApiClient, ApiKey, RequestToken, RequestTokenLog, RequestTokenIdempotency, SigningKey, UsageRollup, UsageRollupDay, UsageRollupStale, UsageRollupState],
    extensions: [Migrator],
    discovery: { warnWhenNoEntities: true },
    pool: { min: 0, max: poolSize },
    migrations: {
      tableName: 'mikro_orm_migrations',
      path: 'server/database/migrations',
      pathTs: 'server/database/migrations',
      migrationsList,
      transactional: true,
      allOrNothing: true,
      emit: 'ts',
      snapshot: false,
    },
    forceUtcTimezone: true,
    allowGlobalContext: false,
  });
}

export default ormOptions(process.env.DATABASE_URL);
