#!/usr/bin/env node
// The `request-token` command: the CLI as built JavaScript (dist/cli, written by `npm install`, `npm start`,
// `npm test` and `npm run build`), so it starts on plain `node`.
try {
  await import('../dist/cli/index.mjs');
} catch (error) {
  if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !String(error.message).includes('dist/cli/index.mjs')) throw error;
  process.stderr.write('request-token: the command is not built yet: run `npm run build` in the repository\n');
  process.exit(1);
}
