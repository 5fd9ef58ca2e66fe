import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { printedSchema } from '../schema/index.js';

it('has an up-to-date schema/schema.graphql (run `npm run schema:print`)', () => {
  const committed = readFileSync(new URL('../schema/schema.graphql', import.meta.url), 'utf8');
  expect(committed).toBe(printedSchema());
});
