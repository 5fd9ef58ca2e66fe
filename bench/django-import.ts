// `tsx bench/django-import.ts`: how long `request-token import django` takes for a Django site's tables, first run and
// re-run (everything skipped), as an operator runs it (the CLI in a child process). One embedded PostgreSQL holds both
// the Django database and the service's. Sizes: BENCH_DJANGO_TOKENS (default 100,000) tokens, BENCH_DJANGO_LOGS
// (default 300,000) log rows; BENCH_PG_PORT picks the port.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startEmbeddedDatabase } from '../server/database/embedded-db.js';
import { djangoTablesSql } from '../test/support/django.js';
import { freePort } from '../test/support/ports.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const tokens = Number(process.env.BENCH_DJANGO_TOKENS ?? 100_000);
const logs = Number(process.env.BENCH_DJANGO_LOGS ?? 300_000);
const dir = await mkdtemp(join(tmpdir(), 'rt-bench-django-'));
const cluster = await startEmbeddedDatabase({
  dir: join(dir, 'pg'),
  port: Number(process.env.BENCH_PG_PORT ?? (await freePort())),
  persistent: false,
});
const url = (name: string) => cluster.url.replace(/\/postgres$/, `/${name}`);
try {
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query('create database django');
  await admin.query('create database service');
  await admin.end();

  const django = new pg.Client({ connectionString: url('django') });
  await django.connect();
  await django.query(djangoTablesSql('public'));
  await django.query(
    `insert into request_token_requesttoken (login_mode, user_id, scope, expiration_time, not_before_time, data, issued_at,
       max_uses, used_to_date)
     select (array['None', 'Request', 'Session'])[1 + i % 3], case when i % 3 = 0 then null else i end, 'scope-' || (i % 20),
       now() + make_interval(days => i % 60 - 30), null, jsonb_build_object('list', 'weekly', 'n', i),
       now() - make_interval(days => i % 365), 1 + i % 10, i % 3
     from generate_series(1, $1) i`,
    [tokens],
  );
  await django.query(
    `insert into request_token_requesttokenlog (token_id, user_id, user_agent, client_ip, status_code, timestamp)
     select 1 + i % $1, case when i % 2 = 0 then i % 1000 end, 'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0',
       ('10.' || (i % 250) || '.' || (i % 199) || '.' || (i % 97))::inet, 200, now() - make_interval(secs => i)
     from generate_series(1, $2) i`,
    [tokens, logs],
  );
  await django.query('analyze');
  await django.end();

  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    DATABASE_URL: url('service'),
    REQUEST_TOKEN_SECRET: 'bench-secret-bench-secret-bench-secret-0123',
  };
  const run = () =>
    new Promise<{ ms: number; stderr: string }>((resolve, reject) => {
      const started = Date.now();
      const child = spawn(process.execPath, ['bin/request-token.mjs', 'import', 'django', '--from', url('django')], {
        cwd: ROOT,
        env,
      });
      let stderr = '';
      child.stderr.on('data', (c) => (stderr += c));
      child.on('exit', (code) =>
        code === 0 ? resolve({ ms: Date.now() - started, stderr }) : reject(new Error(`exit ${code}: ${stderr}`)),
      );
    });
  // The service's migrations run on first connection: once before timing.
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/request-token.mjs', 'clients', 'list'], { cwd: ROOT, env, stdio: 'ignore' });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`clients list: exit ${code}`))));
  });
  const first = await run();
  const again = await run();
  const summary = (s: string) => s.split('\n').filter((l) => /^(dry run: )?(imported|would)/.test(l)).join(' / ');
  process.stdout.write(
    `django import of ${tokens} tokens and ${logs} log rows:\n` +
      `  first run  ${(first.ms / 1000).toFixed(1)} s (${Math.round(((tokens + logs) / first.ms) * 1000)} rows/s): ${summary(first.stderr)}\n` +
      `  re-run     ${(again.ms / 1000).toFixed(1)} s: ${summary(again.stderr)}\n`,
  );
} finally {
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
}
