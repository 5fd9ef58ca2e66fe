import { readdir, readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { parse, type OperationDefinitionNode } from 'graphql';
import { describe, expect, it } from 'vitest';
import { GENERATED_FILE, generateSdk, OPERATIONS_DIR } from '../../scripts/sdk-codegen.js';
import { operations } from '../../sdk/client.js';
import { ROOT } from '../support/process.js';

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : Promise.resolve([join(dir, e.name)]))),
  );
  return nested.flat();
}

describe('the generated SDK code', () => {
  it('matches a fresh codegen run (run `npm run sdk:codegen` after changing the schema or sdk/operations)', async () => {
    const fresh = await generateSdk(ROOT);
    const committed = await readFile(join(ROOT, GENERATED_FILE), 'utf8');
    expect(fresh.path).toBe(GENERATED_FILE);
    expect(committed, `${GENERATED_FILE} is stale: run npm run sdk:codegen`).toBe(fresh.content);
  });

  it('gives the client one method per operation document, named after its root field', async () => {
    const names = (await readdir(join(ROOT, OPERATIONS_DIR))).filter((n) => n.endsWith('.graphql'));
    const documented: string[] = [];
    for (const name of names) {
      const doc = parse(await readFile(join(ROOT, OPERATIONS_DIR, name), 'utf8'));
      for (const def of doc.definitions) {
        if (def.kind === 'OperationDefinition') documented.push((def as OperationDefinitionNode).name!.value);
      }
    }
    const methods = operations.map((o) => o.method).sort();
    expect(methods).toEqual(documented.map((n) => n[0].toLowerCase() + n.slice(1)).sort());
    // The contract's operations are all there.
    expect(methods).toEqual(
      expect.arrayContaining([
        'createRequestToken',
        'redeemRequestToken',
        'recordResponseStatus',
        'revokeRequestToken',
        'requestToken',
        'requestTokens',
        'requestTokenLogs',
      ]),
    );
  });

  it('covers every root field of the printed schema', async () => {
    const schema = parse(await readFile(join(ROOT, 'schema/schema.graphql'), 'utf8'));
    const rootFields = schema.definitions.flatMap((d) =>
      d.kind === 'ObjectTypeDefinition' && (d.name.value === 'Query' || d.name.value === 'Mutation')
        ? (d.fields ?? []).map((f) => f.name.value)
        : [],
    );
    expect(operations.map((o) => o.rootField).sort()).toEqual(expect.arrayContaining(rootFields.sort()));
  });
});

describe('the SDK package boundary', () => {
  // It ships to other people's backends: no server code, no schema code, no Express, nothing not in its dependencies.
  const ALLOWED_PACKAGES = ['graphql', 'graphql-request', '@graphql-typed-document-node/core'];

  it('depends on exactly what a client needs', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'sdk/package.json'), 'utf8'));
    expect(Object.keys(pkg.dependencies).sort()).toEqual([...ALLOWED_PACKAGES].sort());
  });

  it('imports nothing from server/ or schema/, and only its own runtime dependencies', async () => {
    const sdkDir = join(ROOT, 'sdk');
    const offenders: string[] = [];
    const pkg = JSON.parse(await readFile(join(ROOT, 'sdk/package.json'), 'utf8'));
    const sources = (await filesUnder(sdkDir)).filter(
      (f) => f.endsWith('.ts') && !/^(dist|node_modules)\//.test(relative(sdkDir, f)),
    );
    for (const file of sources) {
      const source = await readFile(file, 'utf8');
      const specifiers = [
        ...source.matchAll(/(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/g),
        ...source.matchAll(/import\s*\(\s*['"]([^'"]+)['"]\s*\)/g),
        ...source.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm),
        ...source.matchAll(/declare module\s+['"]([^'"]+)['"]/g),
      ].map((m) => m[1]);
      for (const spec of specifiers) {
        const where = relative(ROOT, file);
        if (spec.startsWith('.')) {
          const target = relative(sdkDir, resolve(file, '..', spec));
          if (target.startsWith('..')) offenders.push(`${where} imports ${spec}`);
        } else if (spec.startsWith('node:') || spec === 'http') {
        } else {
          const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
          if (!ALLOWED_PACKAGES.includes(name) || !pkg.dependencies[name]) offenders.push(`${where} imports ${spec}`);
        }
      }
    }
    expect(offenders).toEqual([]);
  });
});
