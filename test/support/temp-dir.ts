import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A new folder under the system's temporary folder for an embedded PostgreSQL. mkdtemp makes it 0700; run as root,
 * PostgreSQL runs as the `postgres` user, which must enter it, and the service never opens folders it did not create:
 * the test, which made it, opens it for search (0711, no listing).
 */
export async function clusterTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o711);
  return dir;
}
