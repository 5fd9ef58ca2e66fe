#!/usr/bin/env node
import { UsageError } from './command.js';
import { commands, type Command } from './commands.js';

const out = (text: string) => process.stdout.write(text);

function overview(chosen: Command[], prefix = ''): string {
  const width = Math.max(...chosen.map((c) => c.name.length)) + 2;
  return (
    `usage: request-token ${prefix ? `${prefix} ` : ''}<command> [options]\n\ncommands:\n` +
    chosen.map((c) => `  ${c.name.padEnd(width)}${c.summary}\n`).join('') +
    `\n\`request-token <command> --help\` tells more about each.\n`
  );
}

/** `npx request-token <command> …`: each command lives in its own file under cli/ and is listed in cli/commands.ts. */
async function run(argv: string[]): Promise<number> {
  const words = argv.filter((a) => !a.startsWith('-'));
  const wantsHelp = argv.includes('--help') || argv.includes('-h');
  if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
    out(overview(commands));
    return 0;
  }
  // The longest command whose words begin the arguments ("logs truncate" before "logs").
  const chosen = commands
    .filter((c) => c.name.split(' ').every((word, i) => argv[i] === word))
    .sort((a, b) => b.name.length - a.name.length)[0];
  if (chosen) {
    if (wantsHelp && chosen.help) {
      out(chosen.help);
      return 0;
    }
    return chosen.run(argv.slice(chosen.name.split(' ').length), argv);
  }
  // A group ("keys") without its subcommand, or with an unknown one.
  const group = commands.filter((c) => c.name.startsWith(`${argv[0]} `));
  if (group.length > 0 && (wantsHelp || words.length === 1)) {
    out(overview(group, argv[0]));
    return wantsHelp ? 0 : 2;
  }
  const attempted = group.length > 0 ? words.slice(0, 2).join(' ') : argv[0];
  process.stderr.write(`request-token: unknown command '${attempted}'\n\n${overview(group.length > 0 ? group : commands, group.length > 0 ? argv[0] : '')}`);
  return 2;
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`request-token: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);
