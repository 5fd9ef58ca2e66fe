// `npm run build:service` (and `npm start`, through prestart): bundles the service — server/main.ts and everything it
// imports from this repository — into dist/server.mjs, which runs on plain `node`. Packages stay in node_modules.
// Running the bundle rather than the sources through tsx keeps the TypeScript loader (its own thread and heap) out of
// the service: about 50 MB less resident memory, idle and under load (BENCHMARKS.md).
import { randomBytes } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

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

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const started = performance.now();
  const out = await bundle();
  process.stderr.write(`built ${out} in ${Math.round(performance.now() - started)} ms\n`);
}
