// Help texts, apart from the commands' code so that `request-token <command> --help` loads nothing else.

export const SERVICE_OPTIONS = `
Talks to the running service through its API (the SDK), so its caches see the change at once:
  --url URL        the service, e.g. http://127.0.0.1:4000 (default: $REQUEST_TOKEN_URL, else http://127.0.0.1:$PORT,
                   PORT defaulting to 4000)
  --api-key KEY    an admin API key (default: $REQUEST_TOKEN_API_KEY, else the file $DATA_DIR/admin-api-key,
                   DATA_DIR defaulting to ./.data)
`;

export const ISSUE_USAGE = `usage: request-token issue --scope S --csv recipients.csv [options] > links.csv

Issues one token per CSV row through a running service (createRequestTokens, in batches) and writes
userId,tokenId,link per row to stdout. The CSV has a header row with a userId column; every other column goes
into the token's data. The link is --target-url with the token added as ?rt=…, or the bare JWT without it.

options:
  --scope S             scope of every token (required)
  --csv FILE            recipients, "-" for stdin (required)
  --target-url URL      bind every token to this URL and write tokenised links
  --login-mode MODE     NONE (default), REQUEST or SESSION
  --max-uses N          uses per token (default: the server's)
  --expires-at ISO      expiry of every token, e.g. 2026-12-31T00:00:00Z
  --batch N             tokens per call, 1–10000 (default 5000)
  --max-request-bytes N a call is also cut below this size (default 200000: the service's MAX_BODY_BYTES
                        is 262144 unless configured)
  --concurrency N       calls in flight (default 2)
  --url URL             the service (default: $REQUEST_TOKEN_URL, else http://127.0.0.1:$PORT)
  --api-key KEY         an API key allowed to issue (default: $REQUEST_TOKEN_API_KEY, else $DATA_DIR/admin-api-key)

Progress, rate and ETA go to stderr. Each batch is all or nothing; when one is refused the command still writes
every token issued by other batches, reports the refused rows on stderr and exits with status 1.
`;

export const LOGS_TRUNCATE_USAGE = `usage: request-token logs truncate [--max-count N] [--max-days D] [--batch-size B] [--dry-run]
       request-token logs truncate --all [--batch-size B] [--dry-run]

Deletes redemption log rows beyond the newest N and/or older than D days (24-hour periods), oldest first, in batches of
B rows (default 5000), each its own short transaction. N and D are at least 1: to empty the log, say --all
(django-request-token's --max-count 0 / --max-days 0 meant "no limit": leave the option out instead). --dry-run shows
what would be deleted.

Needs the database directly (the service need not run): DATABASE_URL, else the embedded PostgreSQL under DATA_DIR
(default ./.data), the running one or started for the command. Through the API instead: the truncateRequestTokenLogs
mutation.
`;

export const PARTITIONS_ENSURE_USAGE = `usage: request-token partitions ensure [--months N]

Creates the redemption log's monthly partitions that are missing, from the current month (UTC, on the database's
clock) through N months ahead (default: $LOG_PARTITIONS_AHEAD, else 3), then lists every partition with its rows
(estimated). Safe to run at any time and from several places at once: it creates only what is missing. The service
does the same at start-up and every hour; run this from cron where the service may be down across a month's start.

Needs the database directly (the service need not run): DATABASE_URL, else the embedded PostgreSQL under DATA_DIR
(default ./.data), the running one or started for the command.
`;

export const ROLLUPS_COMPACT_USAGE = `usage: request-token rollups compact

Rolls the usage statistics up to the last whole minute that ended five minutes ago, and rebuilds the hours marked
stale (rows written, changed or deleted there since). The service does this on its own every
STATS_COMPACTION_INTERVAL_SECONDS (default 60); with 0 there, run this from cron instead. Safe beside running
services: one compaction runs at a time, the others skip.

Needs the database directly (the service need not run): DATABASE_URL, else the embedded PostgreSQL under DATA_DIR
(default ./.data), the running one or started for the command.
`;

export const ROLLUPS_REBUILD_USAGE = `usage: request-token rollups rebuild [--since 2026-11-01T00:00:00Z] [--until 2026-12-01T00:00:00Z]

Rolls the usage statistics of the hours in [since, until) (default: all of them) up again from the log and the tokens,
then compacts. Needed only after rows were written or deleted behind the service's back (a restore, SQL by hand); the
service, the Django import and retention keep the rollups exact on their own. Until the rebuild is done, statistics
read those hours from the log.

Needs the database directly, like \`rollups compact\`.
`;

export const CITUS_DISTRIBUTE_USAGE = `usage: request-token citus distribute

Distributes the service's tables over a Citus cluster: request_token by id; request_token_log and
request_token_idempotency by token_id, co-located with it; api_client, api_key and signing_key as reference tables.
Then installs the functions through which the hot statements (redeem, refuse, issue) run on the worker holding the
token's shard. Idempotent: run it again after adding workers or upgrading; tables already distributed are left as they
are. Works on a database that already holds rows (Citus moves them into the shards), in one transaction.

Run it once, against the coordinator, after the service has migrated the database (start the service once, or any
command that needs the database). The service detects Citus at start-up and logs the layout it finds.

Needs the database directly: DATABASE_URL (the coordinator). The citus extension must be installed in that
database and the workers added (citus_add_node).
`;
