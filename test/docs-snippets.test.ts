/**
 * Every fenced snippet in README.md, sdk/README.md and docs/**\/*.md (files found when the tests are collected, so a
 * new page is covered without being listed) is tested as written. The convention, by the fence's info string:
 *
 *   ```sh, ```bash, ```shell   run by bash (-e -o pipefail) against a real service on a random port, each block on its
 *                              own, in an empty folder laid out like the repository root for a reader: `.data/admin-api-key`
 *                              holds an admin key, `npx request-token` is the built CLI, PORT is the service's port.
 *                              A non-zero exit fails the test.
 *   ```ts, ```typescript       type-checked (strict, nodenext, as an ES module: top-level await is fine) with
 *                              `@request-token/sdk` and the repository's packages resolvable. Declare what the snippet
 *                              assumes (`declare function unsubscribe(userId: string): Promise<void>;`).
 *   ```graphql                 parsed and validated against schema/schema.graphql.
 *   ```<language> skip         any block with the word `skip` after its language is not run: commands that start
 *                              servers or install things (`npm start`), fragments with placeholders.
 *   anything else              (```text, ```json, ```console, no language…): illustrations and outputs, never run.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { buildSchema, parse, validate } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/harness.js';
import { ROOT } from './support/process.js';

interface Snippet {
  file: string;
  line: number;
  language: string;
  skip: boolean;
  code: string;
}

function markdownFiles(): string[] {
  const under = (dir: string): string[] =>
    readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory() ? under(join(dir, entry.name)) : entry.name.endsWith('.md') ? [join(dir, entry.name)] : [],
    );
  return ['README.md', 'sdk/README.md', ...under('docs')];
}

/** Fenced blocks (``` or ~~~, three or more) with the line their code starts on. */
function snippetsOf(file: string, text: string): Snippet[] {
  const snippets: Snippet[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)\s*(.*)$/.exec(lines[i]);
    if (!open) continue;
    const [, fence, language, rest] = open;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !(lines[j].trimStart().startsWith(fence) && lines[j].trim().replace(/[`~]/g, '') === '')) {
      body.push(lines[j]);
      j++;
    }
    snippets.push({ file, line: i + 2, language: language.toLowerCase(), skip: /\bskip\b/.test(rest), code: body.join('\n') });
    i = j;
  }
  return snippets;
}

const snippets = markdownFiles().flatMap((file) => snippetsOf(file, readFileSync(join(ROOT, file), 'utf8')));
const shell = snippets.filter((s) => ['sh', 'bash', 'shell'].includes(s.language) && !s.skip);
const typescript = snippets.filter((s) => ['ts', 'typescript'].includes(s.language) && !s.skip);
const graphql = snippets.filter((s) => s.language === 'graphql' && !s.skip);
const where = (s: Snippet) => `${s.file}:${s.line}`;

const run = promisify(execFile);
let server: TestServer;
let reader: string;
const typeErrors = new Map<string, string[]>();
const SNIPPET_DIR = join(ROOT, 'test-artifacts', 'snippets');
const tsFileOf = (s: Snippet) => `${s.file.replace(/[^A-Za-z0-9]+/g, '-')}-${s.line}.ts`;

beforeAll(async () => {
  server = await startTestServer();
  // The reader's folder: a project whose `npx request-token` is the built command, and the key `npm start` wrote.
  reader = await mkdtemp(join(tmpdir(), 'rt-snippets-'));
  await mkdir(join(reader, '.data'));
  await mkdir(join(reader, 'node_modules/.bin'), { recursive: true });
  await writeFile(join(reader, '.data/admin-api-key'), `${server.apiKey}\n`);
  await writeFile(join(reader, 'package.json'), JSON.stringify({ name: 'reader', private: true }));
  await symlink(join(ROOT, 'bin/request-token.mjs'), join(reader, 'node_modules/.bin/request-token'));

  if (typescript.length > 0) {
    await rm(SNIPPET_DIR, { recursive: true, force: true });
    await mkdir(SNIPPET_DIR, { recursive: true });
    for (const s of typescript) await writeFile(join(SNIPPET_DIR, tsFileOf(s)), `${s.code}\nexport {};\n`);
    await writeFile(
      join(SNIPPET_DIR, 'tsconfig.json'),
      JSON.stringify({ extends: '../../tsconfig.json', compilerOptions: { noEmit: true }, include: ['*.ts'] }),
    );
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const result = await run(process.execPath, [tsc, '-p', SNIPPET_DIR, '--pretty', 'false'], { cwd: ROOT }).catch((e) => e);
    let file = '';
    for (const line of `${result.stdout ?? ''}`.split('\n').filter(Boolean)) {
      // "path/file.ts(line,col): error …", then indented lines that continue it.
      if (!/^\s/.test(line)) file = /^(?:.*[\\/])?([^\\/(]+\.ts)\(/.exec(line)?.[1] ?? line;
      typeErrors.set(file, [...(typeErrors.get(file) ?? []), line]);
    }
  }
}, 180_000);

afterAll(async () => {
  await server?.close();
  if (reader) await rm(reader, { recursive: true, force: true });
});

describe('documentation snippets', () => {
  it('are found in README.md and docs/', () => {
    expect(shell.some((s) => s.file === 'README.md')).toBe(true);
    expect(typescript.some((s) => s.file === 'README.md')).toBe(true);
  });

  it.each(shell.map((s) => [where(s), s] as const))('%s (sh) runs against the service', async (_name, s) => {
    const port = new URL(server.url).port;
    const result = await run('bash', ['-e', '-o', 'pipefail', '-c', s.code], {
      cwd: reader,
      timeout: 60_000,
      env: {
        PATH: `${join(reader, 'node_modules/.bin')}:${process.env.PATH ?? ''}`,
        HOME: process.env.HOME ?? '/tmp',
        PORT: port,
      },
    }).catch((error) => error);
    expect(result.code ?? 0, `${where(s)} failed:\n${s.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`).toBe(0);
  }, 90_000);

  it.each(typescript.map((s) => [where(s), s] as const))('%s (ts) type-checks', (_name, s) => {
    const errors = typeErrors.get(tsFileOf(s)) ?? [];
    expect(errors, `${where(s)} (test-artifacts/snippets/${tsFileOf(s)}):\n${errors.join('\n')}`).toEqual([]);
  });

  it.each(graphql.map((s) => [where(s), s] as const))('%s (graphql) is valid against the schema', (_name, s) => {
    const schema = buildSchema(readFileSync(join(ROOT, 'schema/schema.graphql'), 'utf8'));
    const errors = validate(schema, parse(s.code)).map((e) => e.message);
    expect(errors, where(s)).toEqual([]);
  });

  it('leaves no type error outside a snippet file', () => {
    const stray = [...typeErrors.entries()].filter(([file]) => !typescript.some((s) => tsFileOf(s) === file));
    expect(stray.flatMap(([, lines]) => lines).map((l) => relative(ROOT, l))).toEqual([]);
  });
});
