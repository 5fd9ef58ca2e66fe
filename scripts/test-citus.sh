#!/usr/bin/env bash
# npm run test:citus: the service on a real Citus cluster (a coordinator and two workers on loopback ports), built from
# ../shared/citus when it is there. Installs PostgreSQL 15 and Citus (root, apt), starts the cluster in a temporary
# folder, then runs vitest.citus.config.ts against the coordinator: each test database is created on every node,
# migrated and distributed (`request-token citus distribute`) before its service starts. The cluster is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${CITUS_SHARED_DIR:-../shared/citus}
if [ ! -x "$shared/cluster.sh" ] || [ ! -x "$shared/install.sh" ]; then
  echo "test:citus: $shared is absent (Citus 13.2.2 for PostgreSQL 15 and its cluster script): nothing run."
  exit 0
fi
base=${CITUS_BASE_PORT:-9750}

"$shared/install.sh"
# The extension is built against Debian's PostgreSQL 15.20 (it links have_createdb_privilege, exported since then): an
# older 15 already on the machine cannot load it.
minor=$(/usr/lib/postgresql/15/bin/postgres --version | sed -n 's/.* 15\.\([0-9]*\).*/\1/p')
if [ "${minor:-0}" -lt 20 ]; then
  echo "test:citus: PostgreSQL 15.$minor is too old for this Citus build: upgrading postgresql-15"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --only-upgrade postgresql-15 postgresql-client-15 >/dev/null
fi

# The nodes' ports must be free (a cluster left running, or one still stopping, would answer there).
for i in 0 1 2 3; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$((base + i))") 2>/dev/null; then
    echo "test:citus: port $((base + i)) is in use (another cluster?): stop it or set CITUS_BASE_PORT" >&2
    exit 1
  fi
done
dir=$(mktemp -d /tmp/rt-citus-XXXXXX)
cleanup() {
  "$shared/cluster.sh" stop "$dir" || true
  # A worker a test added (node3) is stopped by cluster.sh too: it stops every node folder.
  rm -rf "$dir"
}
trap cleanup EXIT
url=$("$shared/cluster.sh" start "$dir" "$base" 2)
# Every test database runs Citus's maintenance daemon on every node, a background worker each: with PostgreSQL's 8 the
# daemons of the suite's databases leave none for the rebalancer's task executor (the rebalance then stays
# "scheduled"). Room for them all, then the same cluster restarted.
for conf in "$dir"/node*/postgresql.conf; do echo "max_worker_processes = 64" >> "$conf"; done
"$shared/cluster.sh" stop "$dir"
url=$("$shared/cluster.sh" start "$dir" "$base" 2)
echo "test:citus: coordinator $url, workers on ports $((base + 1)) and $((base + 2)), cluster in $dir"

CITUS_TEST=1 CITUS_CLUSTER_DIR="$dir" CITUS_BASE_PORT="$base" DATABASE_URL="$url" \
  npx vitest run --config vitest.citus.config.ts "$@"

# The public contract, when it is beside the repository: the schema the service printed is the one it serves.
if [ -f "$shared/../tools/check-contract.mjs" ]; then
  node "$shared/../tools/check-contract.mjs" schema/schema.graphql
fi
