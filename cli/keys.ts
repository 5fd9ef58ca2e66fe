import type { Command } from './commands.js';
import { parseOptions, printTable, withDatabase } from './connect.js';
import { parseApiKey } from '../server/domain/api-keys.js';
import { createKey, findClient, listKeys, revokeKey } from '../server/domain/clients.js';
import { operator } from './database.js';

const USAGE =
  'usage: request-token keys create --client <id or name> --permissions issue,redeem,read [--name N] ' +
  '[--expires 2027-01-01T00:00:00Z] [--rate-limit <per minute>]   (admin keys: --permissions admin, no --client)';

export const keysCreate: Command = {
  name: 'keys create',
  summary: 'create an API key (shown once): keys create --client C --permissions issue,redeem',
  run(args) {
    const { options } = parseOptions(args, ['client', 'permissions', 'name', 'expires', 'rate-limit']);
    if (!options.permissions) throw new Error(USAGE);
    const expiresAt = options.expires ? new Date(options.expires) : null;
    if (expiresAt && Number.isNaN(expiresAt.getTime())) throw new Error('--expires must be an ISO-8601 date-time');
    const rateLimit = options['rate-limit'] === undefined ? null : Number(options['rate-limit']);
    return withDatabase(async (db) => {
      let clientId: string | null = null;
      if (options.client !== undefined) {
        const client = await findClient(operator(db), options.client);
        if (!client) throw new Error(`no client "${options.client}" (see: request-token clients list)`);
        clientId = client.id;
      }
      const { apiKey, key } = await createKey(operator(db), {
        name: options.name ?? `${options.permissions} key`,
        clientId,
        permissions: options.permissions.split(',').map((p) => p.trim().toLowerCase()).filter(Boolean),
        expiresAt,
        rateLimitPerMinute: rateLimit,
      });
      process.stderr.write(
        `created key ${apiKey.id} (${apiKey.permissions.join(', ')}) for ${clientId ? `client ${clientId}` : 'every client'}; ` +
          'it is shown this once:\n',
      );
      process.stdout.write(`${key}\n`);
      return 0;
    });
  },
};

export const keysList: Command = {
  name: 'keys list',
  summary: 'list API keys (never their secrets): keys list [--client C]',
  run(args) {
    const { options } = parseOptions(args, ['client']);
    return withDatabase(async (db) => {
      let clientId: string | null = null;
      if (options.client !== undefined) {
        const client = await findClient(operator(db), options.client);
        if (!client) throw new Error(`no client "${options.client}"`);
        clientId = client.id;
      }
      const keys = await listKeys(operator(db), { clientId });
      printTable(
        keys.map((k) => ({
          id: k.id,
          name: k.name,
          client: k.clientId ?? '(all)',
          permissions: k.permissions.join(','),
          lastUsed: k.lastUsedAt,
          expires: k.expiresAt,
          revoked: k.revokedAt,
        })),
      );
      return 0;
    });
  },
};

export const keysRevoke: Command = {
  name: 'keys revoke',
  summary: 'revoke an API key: keys revoke <key id>',
  run(args) {
    const { positional } = parseOptions(args, []);
    if (positional.length !== 1) throw new Error('usage: request-token keys revoke <key id>');
    // A whole key is accepted too; only its id is used.
    const id = parseApiKey(positional[0])?.id ?? positional[0];
    return withDatabase(async (db) => {
      const key = await revokeKey(operator(db), id);
      process.stdout.write(`revoked key ${key.id} at ${key.revokedAt!.toISOString()} (running servers notice within 5 s)\n`);
      return 0;
    });
  },
};
