// `npm run build:service` (and `npm start`, through prestart): bundles the service — server/main.ts and everything it
// imports from this repository — into dist/server.mjs, which runs on plain `node`. Packages stay in node_modules.
// Running the bundle rather than the sources through tsx keeps the TypeScript loader (its own thread and heap) out of
// the service: about 50 MB less resident memory, idle and under load (BENCHMARKS.md).
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import packageJson from '../package.json' with { type: 'json' };

const { dependencies } = packageJson;

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export const SERVICE_BUNDLE = join(ROOT, 'dist/server.mjs');

/**
 * Bundles `entry` (relative to the repository) into `outfile`. The file is replaced in one step (written aside, then
 * renamed), so a process starting meanwhile reads the old bundle or the new one, never half of one. The bundle sits
 * one level below the repository, like the sources, so paths relative to `import.meta.url` (the dashboard's page)
 * resolve the same.
 */
export async function bundle(entry = 'server/main.ts', outfile = SERVICE_BUNDLE): Promise<string> {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    packages: 'external',
    write: false,
    logLevel: 'warning',
    legalComments: 'none',
    banner: { js: `// Built from ${entry} by scripts/build-service.ts; do not edit.` },
  });
  await mkdir(dirname(outfile), { recursive: true });
  const aside = `${outfile}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(aside, result.outputFiles[0].contents);
  await rename(aside, outfile);
  return outfile;
}

export const CLI_DIR = join(ROOT, 'dist/cli');

/**
 * Bundles the `request-token` command into dist/cli (bin/request-token.mjs runs it on plain `node`). Each command's
 * code is its own chunk, loaded when that command runs, so `--help` and the API commands never load the database
 * layer. The SDK comes from its sources (tsconfig paths), like the rest of the repository's own code.
 */
export async function bundleCli(outdir = CLI_DIR): Promise<string> {
  const aside = `${outdir}.${randomBytes(4).toString('hex')}.tmp`;
  await build({
    absWorkingDir: ROOT,
    entryPoints: { index: 'cli/index.ts' },
    bundle: true,
    splitting: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    outdir: aside,
    outExtension: { '.js': '.mjs' },
    // Packages load from node_modules, except the SDK: its sources are part of this repository.
    external: Object.keys(dependencies).filter((name) => name !== '@request-token/sdk'),
    logLevel: 'warning',
    legalComments: 'none',
    banner: { js: '// Built from cli/ by scripts/build-service.ts; do not edit.' },
  });
  await rm(outdir, { recursive: true, force: true });
  await rename(aside, outdir);
  return outdir;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const started = performance.now();
  const outputs = await Promise.all([bundle(), bundleCli()]);
  process.stderr.write(`built ${outputs.join(' and ')} in ${Math.round(performance.now() - started)} ms\n`);
}
