import type { Command } from './commands.js';
import { generateApiKey } from '../server/domain/api-keys.js';

export const keygen: Command = {
  name: 'keygen',
  summary: 'print a new random API key (for REQUEST_TOKEN_ADMIN_KEY)',
  async run() {
    process.stdout.write(`${generateApiKey().key}\n`);
    return 0;
  },
};
