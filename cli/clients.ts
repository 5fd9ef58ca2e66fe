import type { Command } from './commands.js';
import { parseOptions, printTable, withDatabase } from './connect.js';
import { createClient, listClients } from '../server/domain/clients.js';
import { operator } from './database.js';

export const clientsCreate: Command = {
  name: 'clients create',
  summary: 'create an API client (tenant): clients create <name>',
  run(args) {
    const { positional } = parseOptions(args, []);
    if (positional.length !== 1) throw new Error('usage: request-token clients create <name>');
    return withDatabase(async (db) => {
      const client = await createClient(operator(db), { name: positional[0] });
      process.stdout.write(`created client ${client.id} "${client.name}"\n`);
      return 0;
    });
  },
};

export const clientsList: Command = {
  name: 'clients list',
  summary: 'list API clients',
  run() {
    return withDatabase(async (db) => {
      printTable((await listClients(operator(db))).map((c) => ({ id: c.id, name: c.name, created: c.createdAt })));
      return 0;
    });
  },
};
