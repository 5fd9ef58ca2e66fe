import { readFileSync } from 'node:fs';
import { parseOwnOptions, type Command } from './command.js';
import { withDatabase } from './connect.js';
import { resolveSecret } from '../server/domain/bootstrap.js';
import { addVerifyingKey } from '../server/domain/signing-keys.js';

const USAGE = `usage: request-token signing-keys add --kid KID --secret-file FILE --verify-only [--algorithm HS256]

Adds an existing HS256 secret to the signing-key ring as a key that only verifies: links signed with it keep redeeming
(those without a kid in their header too, such as django-request-token's, signed with its SECRET_KEY), while new links
are signed with the active key. The secret is read from FILE (one trailing newline ignored; "-" reads standard input),
never from the command line, and stored encrypted. Running servers pick it up within 10 s. Retire it with
\`signing-keys retire KID\` once the links it signed have expired.
`;

export const signingKeysAdd: Command = {
  name: 'signing-keys add',
  summary: 'add an existing HS256 secret as a verify-only key: --kid KID --secret-file FILE --verify-only',
  async run(args) {
    const options = parseOwnOptions(
      args,
      {
        kid: { type: 'string' },
        algorithm: { type: 'string', default: 'HS256' },
        'secret-file': { type: 'string' },
        'verify-only': { type: 'boolean', default: false },
      },
      USAGE,
    );
    if ('exit' in options) return options.exit;
    const parsed = options.values;
    const missing = [
      !parsed.kid && '--kid is required',
      !parsed['secret-file'] && '--secret-file is required',
      // An added key never signs: new links are signed by a key the service made (signing-keys rotate).
      !parsed['verify-only'] && '--verify-only is required: an added secret only verifies (to sign with a new key, rotate)',
    ].filter(Boolean);
    if (missing.length) {
      process.stderr.write(`${missing.join('\n')}\n\n${USAGE}`);
      return 2;
    }
    const file = parsed['secret-file']!;
    let secret: Buffer;
    try {
      secret = readFileSync(file === '-' ? 0 : file);
    } catch (error) {
      process.stderr.write(`request-token: cannot read --secret-file: ${(error as Error).message}\n`);
      return 2;
    }
    const end = secret.at(-1) === 0x0a ? (secret.at(-2) === 0x0d ? 2 : 1) : 0;
    secret = secret.subarray(0, secret.length - end);
    return withDatabase(async (db, config) => {
      const encryptionKey = config.keyEncryptionKey ?? (await resolveSecret(config, () => {}));
      const key = await addVerifyingKey(db.pool, encryptionKey, { kid: parsed.kid!, algorithm: parsed.algorithm, secret });
      process.stdout.write(
        `added signing key ${key.kid} (${key.algorithm}, verify only); running servers accept the links it signed within 10 s\n`,
      );
      return 0;
    });
  },
};
