import type { RequestTokenClient } from '@request-token/sdk';
import type { Command } from './command.js';
import { parseCommand, printTable, UsageError, validationFailed, withService } from './service.js';

export const clientsCreate: Pick<Command, 'run'> = {
  run(args) {
    const { values, positionals } = parseCommand(args, {});
    if (positionals.length !== 1) throw new UsageError('usage: request-token clients create <name>');
    return withService(values, async (rt) => {
      const result = await rt.createApiClient({ name: positionals[0] });
      if (result.__typename !== 'CreateApiClientSuccess') return validationFailed(result);
      process.stdout.write(`created client ${result.client.id} "${result.client.name}"\n`);
      return 0;
    });
  },
};

export const clientsList: Pick<Command, 'run'> = {
  run(args) {
    const { values } = parseCommand(args, {});
    return withService(values, async (rt) => {
      printTable((await rt.apiClients()).map((c) => ({ id: c.id, name: c.name, created: c.createdAt })));
      return 0;
    });
  },
};

/** A client by id or by name. */
export async function findClient(rt: RequestTokenClient, idOrName: string) {
  const clients = await rt.apiClients();
  const client = clients.find((c) => c.id === idOrName) ?? clients.find((c) => c.name === idOrName);
  if (!client) throw new UsageError(`no client "${idOrName}" (see: request-token clients list)`);
  return client;
}
