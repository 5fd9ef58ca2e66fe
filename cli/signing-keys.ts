import type { Command } from './commands.js';
import { parseOptions, printTable, withDatabase } from './connect.js';
import { resolveSecret } from '../server/domain/bootstrap.js';
import { listSigningKeys, retireSigningKey, rotateSigningKey } from '../server/domain/signing-keys.js';

export const signingKeysRotate: Command = {
  name: 'signing-keys rotate',
  summary: 'make a new signing key active; the old one keeps verifying: [--algorithm HS256|EdDSA|ES256]',
  run(args) {
    const { options } = parseOptions(args, ['algorithm']);
    return withDatabase(async (db, config) => {
      const secret = await resolveSecret(config, () => {});
      const key = await rotateSigningKey(db.pool, config.keyEncryptionKey ?? secret, { algorithm: options.algorithm });
      process.stdout.write(
        `active signing key is now ${key.kid} (${key.algorithm}); the previous key verifies only. ` +
          'Running servers switch within 10 s.\n',
      );
      return 0;
    });
  },
};

export const signingKeysList: Command = {
  name: 'signing-keys list',
  summary: 'list the signing-key ring',
  run() {
    return withDatabase(async (db) => {
      printTable(
        (await listSigningKeys(db)).map((k) => ({
          kid: k.kid,
          algorithm: k.algorithm,
          state: k.state,
          created: k.createdAt,
          retired: k.retiredAt,
        })),
      );
      return 0;
    });
  },
};

export const signingKeysRetire: Command = {
  name: 'signing-keys retire',
  summary: 'stop a (non-active) signing key from verifying: signing-keys retire <kid>',
  run(args) {
    const { positional } = parseOptions(args, []);
    if (positional.length !== 1) throw new Error('usage: request-token signing-keys retire <kid>');
    return withDatabase(async (db) => {
      const key = await retireSigningKey(db.pool, positional[0]);
      process.stdout.write(`retired signing key ${key.kid}; tokens it signed are refused from now on\n`);
      return 0;
    });
  },
};
