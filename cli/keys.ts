import type { ApiKeyPermission } from '@request-token/sdk';
import { findClient } from './clients.js';
import type { Command } from './command.js';
import { parseCommand, printTable, UsageError, validationFailed, withService } from './service.js';

const PERMISSIONS: readonly ApiKeyPermission[] = ['ADMIN', 'ISSUE', 'READ', 'REDEEM'];

export const keysCreate: Pick<Command, 'run'> = {
  run(args) {
    const { values } = parseCommand(args, {
      client: { type: 'string' },
      permissions: { type: 'string' },
      name: { type: 'string' },
      expires: { type: 'string' },
      'rate-limit': { type: 'string' },
    });
    if (!values.permissions) throw new UsageError('--permissions is required (see: request-token keys create --help)');
    const permissions = values.permissions.split(',').map((p) => p.trim().toUpperCase()).filter(Boolean);
    const unknown = permissions.find((p) => !PERMISSIONS.includes(p as ApiKeyPermission));
    if (unknown) throw new UsageError(`unknown permission "${unknown.toLowerCase()}" (known: admin, issue, read, redeem)`);
    const expiresAt = values.expires ? new Date(values.expires) : null;
    if (expiresAt && Number.isNaN(expiresAt.getTime())) throw new UsageError('--expires must be an ISO-8601 date-time');
    const rateLimit = values['rate-limit'];
    if (rateLimit !== undefined && !/^\d+$/.test(rateLimit)) throw new UsageError('--rate-limit must be a whole number');
    return withService(values, async (rt) => {
      const client = values.client === undefined ? null : await findClient(rt, values.client);
      const result = await rt.createApiKey({
        name: values.name ?? `${permissions.join(',').toLowerCase()} key`,
        clientId: client?.id ?? null,
        permissions: permissions as ApiKeyPermission[],
        expiresAt: expiresAt?.toISOString() ?? null,
        rateLimitPerMinute: rateLimit === undefined ? null : Number(rateLimit),
      });
      if (result.__typename !== 'CreateApiKeySuccess') return validationFailed(result);
      const { apiKey, key } = result;
      process.stderr.write(
        `created key ${apiKey.id} (${apiKey.permissions.join(', ').toLowerCase()}) for ` +
          `${client ? `client ${client.id}` : 'every client'}; it is shown this once:\n`,
      );
      process.stdout.write(`${key}\n`);
      return 0;
    });
  },
};

export const keysList: Pick<Command, 'run'> = {
  run(args) {
    const { values } = parseCommand(args, { client: { type: 'string' } });
    return withService(values, async (rt) => {
      const client = values.client === undefined ? null : await findClient(rt, values.client);
      const keys = await rt.apiKeys({ clientId: client?.id ?? null });
      printTable(
        keys.map((k) => ({
          id: k.id,
          name: k.name,
          client: k.clientId ?? '(all)',
          permissions: k.permissions.join(',').toLowerCase(),
          lastUsed: k.lastUsedAt,
          expires: k.expiresAt,
          revoked: k.revokedAt,
        })),
      );
      return 0;
    });
  },
};

export const keysRevoke: Pick<Command, 'run'> = {
  run(args) {
    const { values, positionals } = parseCommand(args, {});
    if (positionals.length !== 1) throw new UsageError('usage: request-token keys revoke <key id>');
    // A whole key (rt_<id>_<secret>) is accepted too; only its id is used.
    const id = /^rt_([A-Za-z0-9]+)_/.exec(positionals[0])?.[1] ?? positionals[0];
    return withService(values, async (rt) => {
      const result = await rt.revokeApiKey({ id });
      if (result.__typename !== 'RevokeApiKeySuccess') throw new UsageError(result.message);
      process.stdout.write(`revoked key ${result.apiKey.id} at ${result.apiKey.revokedAt}\n`);
      return 0;
    });
  },
};
