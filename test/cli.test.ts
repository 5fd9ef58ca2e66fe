import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { commands } from '../cli/commands.js';
import { ROOT } from './support/process.js';

/** Runs the built command (what `npx request-token` runs), resolving to its exit status and output. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await promisify(execFile)(process.execPath, ['bin/request-token.mjs', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '' },
  }).then(
    (ok) => ({ code: 0, ...ok }),
    (error) => ({ code: error.code as number, stdout: error.stdout as string, stderr: error.stderr as string }),
  );
  return result;
}

describe('request-token', () => {
  it('lists its commands on --help, help or no arguments, exit status 0', async () => {
    for (const args of [['--help'], ['help'], []]) {
      const { code, stdout } = await cli(...args);
      expect(code).toBe(0);
      for (const command of commands) expect(stdout).toContain(command.name);
    }
  });

  it.each(commands.map((c) => c.name))('%s --help prints its usage and exits 0', async (name) => {
    const { code, stdout, stderr } = await cli(...name.split(' '), '--help');
    expect([code, stderr]).toEqual([0, '']);
    expect(stdout).toMatch(new RegExp(`^usage: request-token ${name}`));
  });

  it('lists a group\'s subcommands on "<group> --help" (exit 0) and without a subcommand (exit 2)', async () => {
    const help = await cli('keys', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/keys create[\s\S]*keys list[\s\S]*keys revoke/);
    expect((await cli('keys')).code).toBe(2);
  });

  it("names an unknown command: unknown command 'bogus'", async () => {
    const bogus = await cli('bogus');
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toMatch(/^request-token: unknown command 'bogus'\n/);
    const sub = await cli('keys', 'bogus');
    expect(sub.code).toBe(2);
    expect(sub.stderr).toMatch(/^request-token: unknown command 'keys bogus'\n/);
  });

  it('says which commands need the database directly rather than the service', async () => {
    expect((await cli('logs', 'truncate', '--help')).stdout).toMatch(/Needs the database directly/);
    expect((await cli('keys', 'revoke', '--help')).stdout).toMatch(/through its API/);
  });

  it('explains an unreachable service in one line', async () => {
    const { code, stderr } = await cli('clients', 'list', '--url', 'http://127.0.0.1:9', '--api-key', 'rt_x_y');
    expect(code).toBe(1);
    expect(stderr).toMatch(/^request-token: cannot reach the service at http:\/\/127\.0\.0\.1:9\/graphql: is it running/);
  });
});
