export interface Command {
  /** One or more words, e.g. "keygen" or "logs truncate". */
  name: string;
  /** One line for `request-token --help`. */
  summary: string;
  /** The text `request-token <name> --help` prints (exit status 0). Without it, the command handles --help itself. */
  help?: string;
  /** Receives the arguments after the command's words; resolves to the exit status. */
  run(args: string[], all: string[]): Promise<number>;
}

/** A mistake on the command line or in the input: printed as is, exit status 2. */
export class UsageError extends Error {}
