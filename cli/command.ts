import { parseArgs } from 'node:util';
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

type Options = Record<string, { type: 'string' | 'boolean'; short?: string; default?: string | boolean }>;
type Values<O extends Options> = { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string };

/**
 * The options of a command that prints its own usage: the parsed values, or the exit status when there is nothing
 * more to do (`--help`: the usage on stdout, 0; a bad option: the message and the usage on stderr, 2).
 */
export function parseOwnOptions<O extends Options>(args: string[], options: O, usage: string): { values: Values<O> } | { exit: number } {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args,
      options: { ...options, help: { type: 'boolean', short: 'h', default: false } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${usage}`);
    return { exit: 2 };
  }
  if (values.help) {
    process.stdout.write(usage);
    return { exit: 0 };
  }
  return { values: values as Values<O> };
}
