import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

// The layers of docs/architecture.md, checked on the import statements of the sources.
const root = join(import.meta.dirname, '..');

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every module a file imports (static, dynamic and `import type`), as written. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)].map((m) => m[1]);
}

/** An import resolved against the repository root when relative (`schema/index.js`), else the package name. */
const resolved = (file: string, spec: string) =>
  spec.startsWith('.') ? relative(root, join(root, file, '..', spec)) : spec;

const GRAPHQL = /^(graphql|graphql-[\w-]+|@graphql-[\w-]+\/.*|@pothos\/.*|@envelop\/.*|@escape\.tech\/.*)$/;

describe('the layers', () => {
  const domainAndDatabase = [...sources('server/domain'), ...sources('server/database')];

  it('the domain and the database import nothing from GraphQL or the schema', () => {
    const offending = domainAndDatabase.flatMap((file) =>
      importsOf(file)
        .map((spec) => resolved(file, spec))
        .filter((target) => GRAPHQL.test(target) || target.startsWith('schema/') || target.startsWith('server/http/'))
        .map((target) => `${file} → ${target}`),
    );
    expect(offending).toEqual([]);
  });

  it('the database layer does not import the domain', () => {
    const offending = sources('server/database').flatMap((file) =>
      importsOf(file)
        .map((spec) => resolved(file, spec))
        .filter((target) => target.startsWith('server/domain/'))
        .map((target) => `${file} → ${target}`),
    );
    expect(offending).toEqual([]);
  });

  it('only server/http/app.ts, where the app is built, imports schema/ (besides the schema itself and tests)', () => {
    const importers = [...sources('server'), ...sources('cli'), ...sources('bench'), ...sources('scripts')].filter(
      (file) => importsOf(file).some((spec) => resolved(file, spec).startsWith('schema/')),
    );
    expect(importers).toEqual(['server/http/app.ts']);
  });

  it('the schema does not import the HTTP edge', () => {
    const offending = sources('schema').flatMap((file) =>
      importsOf(file)
        .map((spec) => resolved(file, spec))
        .filter((target) => target.startsWith('server/http/'))
        .map((target) => `${file} → ${target}`),
    );
    expect(offending).toEqual([]);
  });

  it('resolvers leave units of work, caches and the refusal log to the domain', () => {
    const offending = sources('schema').flatMap((file) => {
      const text = readFileSync(join(root, file), 'utf8');
      return ['em.fork(', 'authenticator.clear(', 'refusalLog.'].filter((call) => text.includes(call)).map((c) => `${file}: ${c}`);
    });
    expect(offending).toEqual([]);
  });
});
