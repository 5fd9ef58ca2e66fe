#!/usr/bin/env node
import { commands } from './commands.js';

/** `npx request-token <command> …`: each command lives in its own file under cli/ and is listed in cli/commands.ts. */
async function run(argv: string[]): Promise<number> {
  const [name] = argv;
  // The longest command whose words begin the arguments ("logs truncate" before "logs").
  const chosen = commands
    .filter((c) => c.name.split(' ').every((word, i) => argv[i] === word))
    .sort((a, b) => b.name.length - a.name.length)[0];
  if (!chosen || name === 'help' || name === '--help' || name === undefined) {
    process.stdout.write(`usage: request-token <command> [options]\n\ncommands:\n`);
    for (const c of commands) process.stdout.write(`  ${c.name.padEnd(24)} ${c.summary}\n`);
    return name && name !== 'help' && name !== '--help' ? 2 : 0;
  }
  return chosen.run(argv.slice(chosen.name.split(' ').length), argv);
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`request-token: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
