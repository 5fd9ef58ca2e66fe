import type { Command } from './command.js';
import {
  CITUS_DISTRIBUTE_USAGE,
  ISSUE_USAGE,
  LOGS_TRUNCATE_USAGE,
  PARTITIONS_ENSURE_USAGE,
  ROLLUPS_COMPACT_USAGE,
  ROLLUPS_REBUILD_USAGE,
  SERVICE_OPTIONS,
} from './usage.js';

export type { Command } from './command.js';

/**
 * Every command, by name. A command's code is imported only when it runs, so `--help` and the commands that only talk
 * to the service never load the database layer (the CLI starts in a fraction of the time).
 */
const lazy =
  <K extends string>(load: () => Promise<Record<K, Pick<Command, 'run'>>>, key: K): Command['run'] =>
  async (args, all) =>
    (await load())[key].run(args, all);

const SERVICE = SERVICE_OPTIONS;

export const commands: Command[] = [
  {
    name: 'keygen',
    summary: 'print a new random API key (for REQUEST_TOKEN_ADMIN_KEY)',
    help: 'usage: request-token keygen\n\nPrints a new random API key. Needs neither the service nor the database.\n',
    run: lazy(() => import('./keygen.js'), 'keygen'),
  },
  {
    name: 'clients create',
    summary: 'create an API client (tenant)',
    help: `usage: request-token clients create <name> [--url URL] [--api-key KEY]\n${SERVICE}`,
    run: lazy(() => import('./clients.js'), 'clientsCreate'),
  },
  {
    name: 'clients list',
    summary: 'list API clients',
    help: `usage: request-token clients list [--url URL] [--api-key KEY]\n${SERVICE}`,
    run: lazy(() => import('./clients.js'), 'clientsList'),
  },
  {
    name: 'keys create',
    summary: 'create an API key (shown once)',
    help:
      'usage: request-token keys create --client <id or name> --permissions issue,redeem,read [--name N]\n' +
      '         [--expires 2027-01-01T00:00:00Z] [--rate-limit <per minute>] [--url URL] [--api-key KEY]\n\n' +
      'Admin keys: --permissions admin, no --client. The key is printed on stdout, once.\n' +
      SERVICE,
    run: lazy(() => import('./keys.js'), 'keysCreate'),
  },
  {
    name: 'keys list',
    summary: 'list API keys (never their secrets)',
    help: `usage: request-token keys list [--client <id or name>] [--url URL] [--api-key KEY]\n${SERVICE}`,
    run: lazy(() => import('./keys.js'), 'keysList'),
  },
  {
    name: 'keys revoke',
    summary: 'revoke an API key',
    help: `usage: request-token keys revoke <key id, or the whole key> [--url URL] [--api-key KEY]\n${SERVICE}`,
    run: lazy(() => import('./keys.js'), 'keysRevoke'),
  },
  {
    name: 'signing-keys rotate',
    summary: 'make a new signing key active; the old one keeps verifying',
    help: `usage: request-token signing-keys rotate [--algorithm HS256|EdDSA|ES256] [--url URL] [--api-key KEY]\n${SERVICE}`,
    run: lazy(() => import('./signing-keys.js'), 'signingKeysRotate'),
  },
  {
    name: 'signing-keys list',
    summary: 'list the signing-key ring',
    help: `usage: request-token signing-keys list [--url URL] [--api-key KEY]\n${SERVICE}`,
    run: lazy(() => import('./signing-keys.js'), 'signingKeysList'),
  },
  {
    name: 'signing-keys retire',
    summary: 'stop a (non-active) signing key from verifying',
    help: `usage: request-token signing-keys retire <kid> [--url URL] [--api-key KEY]\n${SERVICE}`,
    run: lazy(() => import('./signing-keys.js'), 'signingKeysRetire'),
  },
  {
    name: 'signing-keys add',
    summary: 'add an existing HS256 secret as a verify-only key (needs the database)',
    run: lazy(() => import('./signing-keys-add.js'), 'signingKeysAdd'),
  },
  {
    name: 'logs truncate',
    summary: 'delete old redemption log rows, in batches (needs the database)',
    help: LOGS_TRUNCATE_USAGE,
    run: lazy(() => import('./logs-truncate.js'), 'logsTruncate'),
  },
  {
    name: 'partitions ensure',
    summary: "create the redemption log's coming monthly partitions, for cron (needs the database)",
    help: PARTITIONS_ENSURE_USAGE,
    run: lazy(() => import('./partitions.js'), 'partitionsEnsure'),
  },
  {
    name: 'rollups compact',
    summary: 'roll the usage statistics up to five minutes ago (needs the database; for cron)',
    help: ROLLUPS_COMPACT_USAGE,
    run: lazy(() => import('./rollups.js'), 'rollupsCompact'),
  },
  {
    name: 'rollups rebuild',
    summary: 'roll a range of hours up again from the log (needs the database)',
    help: ROLLUPS_REBUILD_USAGE,
    run: lazy(() => import('./rollups.js'), 'rollupsRebuild'),
  },
  {
    name: 'citus distribute',
    summary: 'distribute the tables over a Citus cluster (needs the database: the coordinator)',
    help: CITUS_DISTRIBUTE_USAGE,
    run: lazy(() => import('./citus-distribute.js'), 'citusDistribute'),
  },
  {
    name: 'issue',
    summary: 'issue one token per CSV row through the service and write userId,tokenId,link',
    help: ISSUE_USAGE,
    run: lazy(() => import('./issue.js'), 'issue'),
  },
  {
    name: 'import django',
    summary: "import django-request-token's tokens and logs (needs the database)",
    run: lazy(() => import('./import-django.js'), 'importDjangoCommand'),
  },
];
