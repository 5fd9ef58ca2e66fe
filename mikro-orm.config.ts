import { defineConfig } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import { ApiClient } from './server/database/entities/api-client.js';
import { ApiKey } from './server/database/entities/api-key.js';
import { RequestToken } from './server/database/entities/request-token.js';
import { RequestTokenLog } from './server/database/entities/request-token-log.js';
import { migrationsList } from './server/database/migrations/index.js';

/**
 * The ORM's model and migrations, shared by the server (`server/database/db.ts`, which adds the connection from Config) and the
 * MikroORM CLI (`npx mikro-orm migration:create`, with DATABASE_URL set; add the new file to server/database/migrations/index.ts).
 */
export function ormOptions(clientUrl: string | undefined, poolSize = 10) {
  return defineConfig({
    clientUrl,
    entities: [RequestToken, RequestTokenLog, ApiKey, ApiClient],
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
