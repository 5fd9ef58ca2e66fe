import type { SigningAlgorithm } from '@request-token/sdk';
import type { Command } from './command.js';
import { parseCommand, printTable, UsageError, validationFailed, withService } from './service.js';

const ALGORITHMS: readonly SigningAlgorithm[] = ['HS256', 'EdDSA', 'ES256'];

export const signingKeysRotate: Pick<Command, 'run'> = {
  run(args) {
    const { values } = parseCommand(args, { algorithm: { type: 'string' } });
    const algorithm = ALGORITHMS.find((a) => a.toLowerCase() === (values.algorithm ?? 'HS256').toLowerCase());
    if (!algorithm) throw new UsageError(`--algorithm must be ${ALGORITHMS.join(', ')}`);
    return withService(values, async (rt) => {
      const result = await rt.rotateSigningKey({ input: { algorithm } });
      if (result.__typename !== 'RotateSigningKeySuccess') return validationFailed(result);
      process.stdout.write(
        `active signing key is now ${result.key.kid} (${result.key.algorithm}); the previous key verifies only. ` +
          'Other running servers switch within 10 s.\n',
      );
      return 0;
    });
  },
};

export const signingKeysList: Pick<Command, 'run'> = {
  run(args) {
    const { values } = parseCommand(args, {});
    return withService(values, async (rt) => {
      printTable(
        (await rt.signingKeys()).map((k) => ({
          kid: k.kid,
          algorithm: k.algorithm,
          state: k.state.toLowerCase(),
          created: k.createdAt,
          retired: k.retiredAt,
        })),
      );
      return 0;
    });
  },
};

export const signingKeysRetire: Pick<Command, 'run'> = {
  run(args) {
    const { values, positionals } = parseCommand(args, {});
    if (positionals.length !== 1) throw new UsageError('usage: request-token signing-keys retire <kid>');
    return withService(values, async (rt) => {
      const result = await rt.retireSigningKey({ kid: positionals[0] });
      if (result.__typename === 'ValidationError') return validationFailed(result);
      if (result.__typename !== 'RetireSigningKeySuccess') throw new UsageError(result.message);
      process.stdout.write(`retired signing key ${result.key.kid}; tokens it signed are refused from now on\n`);
      return 0;
    });
  },
};
