import type { MigrationObject } from '@mikro-orm/core';
import { Migration20261128000000 } from './Migration20261128000000.js';
import { Migration20261129010000 } from './Migration20261129010000.js';
import { Migration20261129020000 } from './Migration20261129020000.js';
import { Migration20261129040000 } from './Migration20261129040000.js';

/** Every migration, in order. Listed explicitly so they run the same under tsx, vitest and a build. */
export const migrationsList: MigrationObject[] = [
  { name: 'Migration20261128000000', class: Migration20261128000000 },
  { name: 'Migration20261129010000', class: Migration20261129010000 },
  { name: 'Migration20261129020000', class: Migration20261129020000 },
  { name: 'Migration20261129040000', class: Migration20261129040000 },
];
