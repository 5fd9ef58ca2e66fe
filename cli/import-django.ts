import pg from 'pg';
import { parseOwnOptions, type Command } from './command.js';
import { loadCliConfig } from './connect.js';
import { openServiceDatabase } from './database.js';
import { DEFAULT_IMPORT_BATCH, DjangoImportError, importDjango, type DjangoImportResult } from './django-import.js';

const USAGE = `usage: request-token import django --from postgres://USER@HOST/DB [--schema NAME] [--client NAME] [--kid KID]
       [--dry-run] [--batch-size N] [--reserve-ids N] [--target-origin https://HOST]

Imports django-request-token's tables (request_token_requesttoken, request_token_requesttokenlog) into the service's
database, for one API client (default "default"). Token ids are kept, so links already sent keep naming their token;
the service's id sequences move past the imported ids. Times, uses, users (as strings), login modes, data and log rows
map one to one. A second run imports only rows added since (and brings forward uses Django counted meanwhile).

Before writing anything, every row is staged and checked: an id already taken by another row, or a row that cannot be
mapped, is reported and nothing is written (exit 2). Progress and the final count go to stderr.

  --from URL           the Django database (read only, in one snapshot); a search_path may be given in the URL
                       (?options=-c%20search_path%3Ddjango) or with --schema
  --schema NAME        schema holding the Django tables (default: the connection's current schema)
  --client NAME        API client that owns the imported tokens (default "default")
  --kid KID            the signing key that checks Django's links: "default" when REQUEST_TOKEN_SECRET is the Django
                       SECRET_KEY (the default), else the kid it was added with (signing-keys add --verify-only)
  --dry-run            read, map and check everything; write nothing
  --batch-size N       rows per COPY batch (default ${DEFAULT_IMPORT_BATCH})
  --reserve-ids N      move the service's id sequences N past Django's largest ids, so that Django can go on issuing
                       tokens while both systems run side by side (default 0)
  --target-origin URL  resolves pre-0.4 target_url paths ("/foo") against this origin

This command needs the service's database directly: it connects like the service does (DATABASE_URL, else the
embedded PostgreSQL under DATA_DIR, default ./.data), not through the API.
`;

function wholeNumber(name: string, raw: string | undefined, min: number): number | undefined | string {
  if (raw === undefined) return undefined;
  return /^\d+$/.test(raw) && Number(raw) >= min && Number(raw) <= 2 ** 31 - 1
    ? Number(raw)
    : `--${name} must be a whole number of at least ${min}, got "${raw}"`;
}

function summary(r: DjangoImportResult): string {
  const verb = r.dryRun ? 'would import' : 'imported';
  const extra = (n: number, what: string) => (n ? `, ${n} ${what}` : '');
  return [
    `${r.dryRun ? 'dry run: ' : ''}${verb} ${r.tokens.imported} of ${r.tokens.read} tokens (skipped ${r.tokens.skipped} already imported` +
      `${extra(r.tokens.usesBroughtForward, 'with uses brought forward')}${extra(r.tokens.adjusted, 'with uses adjusted')})`,
    `${verb} ${r.logs.imported} of ${r.logs.read} log rows (skipped ${r.logs.skipped} already imported` +
      `${extra(r.logs.adjusted, 'with an unusable client IP, status or over-long user agent adjusted')})`,
  ].join('\n');
}

export const importDjangoCommand: Command = {
  name: 'import django',
  summary: "import django-request-token's tokens and logs: --from postgres://… [--client NAME] [--dry-run]",
  async run(args) {
    const options = parseOwnOptions(
      args,
      {
        from: { type: 'string' },
        schema: { type: 'string' },
        client: { type: 'string' },
        kid: { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        'batch-size': { type: 'string' },
        'reserve-ids': { type: 'string' },
        'target-origin': { type: 'string' },
      },
      USAGE,
    );
    if ('exit' in options) return options.exit;
    const parsed = options.values;
    const batchSize = wholeNumber('batch-size', parsed['batch-size'], 1);
    const reserveIds = wholeNumber('reserve-ids', parsed['reserve-ids'], 0);
    const origin = parsed['target-origin'];
    const bad = [
      !parsed.from && '--from is required (the Django database URL)',
      typeof batchSize === 'string' && batchSize,
      typeof reserveIds === 'string' && reserveIds,
      origin !== undefined && !/^https?:\/\/[^/?#]+\/?$/i.test(origin) && '--target-origin must be an origin such as https://www.example.com',
    ].filter(Boolean);
    if (bad.length) {
      process.stderr.write(`${bad.join('\n')}\n\n${USAGE}`);
      return 2;
    }

    const config = loadCliConfig();
    if (!config) return 1;
    const source = new pg.Client({ connectionString: parsed.from, application_name: 'request-token import django' });
    try {
      await source.connect();
    } catch (error) {
      process.stderr.write(`request-token: cannot connect to the Django database: ${(error as Error).message}\n`);
      return 1;
    }
    // An error of the idle source connection (the server went away) must not end the process unreported.
    source.on('error', () => {});
    const service = await openServiceDatabase(config).catch(async (error) => {
      await source.end();
      throw error;
    });
    const tty = process.stderr.isTTY;
    let last = 0;
    try {
      const result = await importDjango({
        source,
        target: service.db.pool,
        schema: parsed.schema ?? null,
        client: parsed.client ?? null,
        kid: parsed.kid ?? null,
        dryRun: parsed['dry-run'],
        batchSize: batchSize as number | undefined,
        reserveIds: reserveIds as number | undefined,
        targetOrigin: origin ?? null,
        config,
        progress(line) {
          // A line per batch, at most twice a second on a terminal (overwritten in place), always on a pipe.
          if (tty && Date.now() - last < 500) return;
          last = Date.now();
          process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
        },
      });
      if (tty) process.stderr.write('\r\x1b[K');
      process.stderr.write(`${summary(result)}\n`);
      return 0;
    } catch (error) {
      if (tty) process.stderr.write('\r\x1b[K');
      if (error instanceof DjangoImportError) {
        process.stderr.write(`request-token: ${error.message}\n`);
        for (const problem of error.problems) process.stderr.write(`  ${problem}\n`);
        return 2;
      }
      throw error;
    } finally {
      await source.end().catch(() => {});
      await service.close();
    }
  },
};
