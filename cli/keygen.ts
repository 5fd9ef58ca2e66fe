import { generateApiKey } from '../server/domain/api-key-format.js';
import type { Command } from './command.js';

export const keygen: Pick<Command, 'run'> = {
  async run() {
    process.stdout.write(`${generateApiKey().key}\n`);
    return 0;
  },
};
