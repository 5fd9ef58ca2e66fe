#!/usr/bin/env bash
# npm run bench:citus: bench/citus.ts on a Citus cluster (coordinator + 2 workers) and on one plain PostgreSQL 15, both
# started here from ../shared/citus (same binaries, same machine, same run) and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${CITUS_SHARED_DIR:-../shared/citus}
if [ ! -x "$shared/cluster.sh" ]; then
  echo "bench:citus: $shared is absent: nothing run."
  exit 0
fi
base=${CITUS_BASE_PORT:-9760}
plain_port=$((base + 10))
BIN=/usr/lib/postgresql/15/bin
"$shared/install.sh"
# The nodes' ports must be free (a cluster left running, or one still stopping, would answer there).
for i in 0 1 2 3; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$((base + i))") 2>/dev/null; then
    echo "bench:citus: port $((base + i)) is in use (another cluster?): stop it or set CITUS_BASE_PORT" >&2
    exit 1
  fi
done
dir=$(mktemp -d /tmp/rt-citus-bench-XXXXXX)
chmod 755 "$dir"
cleanup() {
  "$shared/cluster.sh" stop "$dir" || true
  [ -d "$dir/plain" ] && su postgres -s /bin/sh -c "$BIN/pg_ctl -D $dir/plain -m fast -w stop >/dev/null" || true
  rm -rf "$dir"
}
trap cleanup EXIT
citus_url=$("$shared/cluster.sh" start "$dir" "$base" 2)
# One plain PostgreSQL 15, configured like the cluster's nodes (no citus loaded).
mkdir -p "$dir/plain" && chown postgres "$dir/plain"
su postgres -s /bin/sh -c "$BIN/initdb -D $dir/plain -U postgres --auth=trust >/dev/null"
{ echo "listen_addresses = '127.0.0.1'"; echo "port = $plain_port"; echo "max_connections = 300"
  echo "unix_socket_directories = '$dir'"; } >> "$dir/plain/postgresql.conf"
su postgres -s /bin/sh -c "$BIN/pg_ctl -D $dir/plain -l $dir/plain/log -w start >/dev/null"
npx tsx scripts/build-service.ts >/dev/null
BENCH_PLAIN_URL="postgres://postgres@127.0.0.1:$plain_port/postgres" BENCH_CITUS_URL="$citus_url" npx tsx bench/citus.ts "$@"
