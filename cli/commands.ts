import { clientsCreate, clientsList } from './clients.js';
import { importDjangoCommand } from './import-django.js';
import { issue } from './issue.js';
import { keygen } from './keygen.js';
import { logsTruncate } from './logs-truncate.js';
import { keysCreate, keysList, keysRevoke } from './keys.js';
import { signingKeysList, signingKeysRetire, signingKeysRotate } from './signing-keys.js';
import { signingKeysAdd } from './signing-keys-add.js';

export interface Command {
  /** One or more words, e.g. "keygen" or "logs truncate". */
  name: string;
  summary: string;
  /** Receives the arguments after the command's words; resolves to the exit status. */
  run(args: string[], all: string[]): Promise<number>;
}

export const commands: Command[] = [
  keygen,
  clientsCreate,
  clientsList,
  keysCreate,
  keysList,
  keysRevoke,
  signingKeysRotate,
  signingKeysList,
  signingKeysRetire,
  signingKeysAdd,
  logsTruncate,
  issue,
  importDjangoCommand,
];
