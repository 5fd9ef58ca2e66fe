import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../../server/domain/api-keys.js';
import { freePort } from '../support/ports.js';
import { isAlive, ROOT, startService, waitForHealthy, type ServiceProcess } from '../support/process.js';
import { clusterTempDir } from '../support/temp-dir.js';

const running: ServiceProcess[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const service of running) if (service.child.exitCode === null) service.child.kill('SIGKILL');
  for (const dir of dirs) {
    for (const pid of await processesMentioning(dir)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Live processes whose command line mentions `text` (a data directory: its PostgreSQL). */
async function processesMentioning(text: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const state = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (cmd.includes(text) && !state.slice(state.lastIndexOf(')') + 2).startsWith('Z')) found.push(Number(entry));
  }
  return found;
}

async function waitUntil(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 20_000) {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

async function environment() {
  const root = await clusterTempDir('rt-life-');
  dirs.push(root);
  const port = await freePort();
  return {
    root,
    dataDir: join(root, 'data'),
    port,
    base: `http://127.0.0.1:${port}`,
    env: {
      DATA_DIR: join(root, 'data'),
      PORT: String(port),
      EMBEDDED_PG_PORT: String(await freePort()),
      REQUEST_TOKEN_ADMIN_KEY: generateApiKey().key,
    },
  };
}

async function start(env: Record<string, string>, base: string) {
  const service = startService(env);
  running.push(service);
  await waitForHealthy(`${base}/healthz`, service);
  return service;
}

describe('the process lifecycle', () => {
  it('shuts down on SIGHUP (a closed terminal) like on SIGTERM, leaving no PostgreSQL', async () => {
    const { env, base, dataDir } = await environment();
    const service = await start(env, base);
    expect(await processesMentioning(dataDir)).not.toEqual([]);
    service.child.kill('SIGHUP');
    expect(await service.exited).toBe(0);
    expect(service.output()).toContain('SIGHUP: draining requests and shutting down');
    expect(await processesMentioning(dataDir)).toEqual([]);
  }, 60_000);

  it('stops the PostgreSQL a killed service left running, says so in one line, and starts', async () => {
    const { env, base, dataDir } = await environment();
    const first = await start(env, base);
    first.child.kill('SIGKILL');
    await first.exited;
    const orphans = await processesMentioning(dataDir);
    expect(orphans).toHaveLength(1); // the postmaster, still running without its service

    const second = await start(env, base);
    const lines = second.output().split('\n').filter((line) => line.includes('left running'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`stopped an embedded PostgreSQL (pid ${orphans[0]})`);
    expect(await processesMentioning(dataDir)).not.toContain(orphans[0]); // stopped (at most a zombie no one reaps)
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    expect(await processesMentioning(dataDir)).toEqual([]);
  }, 90_000);

  it('recovers after the service and its PostgreSQL were both killed (a stale postmaster.pid)', async () => {
    const { env, base, dataDir } = await environment();
    const first = await start(env, base);
    const postgres = await processesMentioning(dataDir);
    first.child.kill('SIGKILL');
    for (const pid of postgres) process.kill(pid, 'SIGKILL');
    await waitUntil(async () => (await processesMentioning(dataDir)).length === 0, 'the killed postgres is gone');
    await stat(join(dataDir, 'pg', 'postmaster.pid')); // left behind

    const second = await start(env, base);
    expect(second.output().split('\n').filter((line) => line.includes('was not shut down cleanly'))).toHaveLength(1);
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    expect(await processesMentioning(dataDir)).toEqual([]);
  }, 90_000);

  it('refuses a taken port in one line, before starting the database or making an admin key', async () => {
    const { env, dataDir, port } = await environment();
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      const { REQUEST_TOKEN_ADMIN_KEY: _unused, ...withoutKey } = env;
      const service = startService(withoutKey);
      running.push(service);
      expect(await service.exited).toBe(1);
      const output = service.output().trim();
      expect(output).not.toContain('\n');
      expect(output).toMatch(new RegExp(`^request-token: port ${port} is in use: set PORT=\\d+ \\(or another free port\\)$`));
      await expect(stat(join(dataDir, 'pg'))).rejects.toThrow(); // no cluster made
      await expect(stat(join(dataDir, 'admin-api-key'))).rejects.toThrow(); // no key made
    } finally {
      blocker.close();
    }
  }, 60_000);

  it('answers a second service on the same data directory with one line, leaving the first alone', async () => {
    const { env, base } = await environment();
    const first = await start(env, base);
    const second = startService({ ...env, PORT: String(await freePort()) });
    running.push(second);
    expect(await second.exited).toBe(1);
    expect(second.output()).not.toMatch(/^\s+at /m); // no stack trace
    expect(second.output().trim().split('\n').at(-1)).toMatch(/^request-token: another process \(pid \d+\) runs the embedded PostgreSQL in .*: stop it first, or set another DATA_DIR$/);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
  }, 60_000);
});

describe('npm start', () => {
  /** `npm start` as an operator runs it; resolves with npm's process and the service's pid once healthy. */
  async function npmStart(env: Record<string, string>, base: string) {
    const npm = spawn('npm', ['start'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    npm.stdout!.on('data', (chunk) => (output += chunk));
    npm.stderr!.on('data', (chunk) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => npm.on('exit', (code) => resolve(code)));
    const started = Date.now();
    for (;;) {
      if (npm.exitCode !== null) throw new Error(`npm start exited:\n${output}`);
      if ((await fetch(`${base}/healthz`).catch(() => null))?.status === 200) break;
      if (Date.now() - started > 90_000) throw new Error(`npm start not healthy:\n${output}`);
      await sleep(200);
    }
    const service = (await processesMentioning('dist/server.mjs')).find(
      async (pid) => (await readFile(`/proc/${pid}/stat`, 'utf8')).split(' ')[3] === String(npm.pid),
    );
    return { npm, exited, output: () => output, service };
  }

  it.each(['SIGTERM', 'SIGKILL'] as const)(
    'leaves no service and no PostgreSQL behind when npm gets %s',
    async (signal) => {
      const { env, base, dataDir } = await environment();
      const { npm, exited } = await npmStart(env, base);
      const children = (await readFile(`/proc/${npm.pid}/task/${npm.pid}/children`, 'utf8')).trim().split(/\s+/).map(Number);
      expect(children).toHaveLength(1); // npm runs node itself (exec), no shell between them
      const [service] = children;
      npm.kill(signal);
      await exited;
      await waitUntil(() => !isAlive(service), `the service (pid ${service}) exits`, 20_000);
      await waitUntil(async () => (await processesMentioning(dataDir)).length === 0, 'PostgreSQL stops', 20_000);
    },
    150_000,
  );
});
