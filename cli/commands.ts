import { keygen } from './keygen.js';
import { logsTruncate } from './logs-truncate.js';

export interface Command {
  /** One or more words, e.g. "keygen" or "logs truncate". */
  name: string;
  summary: string;
  /** Receives the arguments after the command's words; resolves to the exit status. */
  run(args: string[], all: string[]): Promise<number>;
}

export const commands: Command[] = [keygen, logsTruncate];
