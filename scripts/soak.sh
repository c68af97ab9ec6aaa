#!/usr/bin/env bash
# The soak bench: one example-server node (role all) on a chosen stack, `sample-2` executions
# submitted over HTTP at a fixed rate for a set time (`loadgen soak`, examples/loadgen/soak.rs),
# one row per interval (submitted, finished, the server's RssAnon, p50/p99 submit->complete,
# database connections, tasks QUEUED, size of the Store's tables), then the RssAnon growth after
# the warm-up in bytes per finished execution. Exits non-zero above --limit-kb (default 0.5 KiB).
#
#   scripts/soak.sh [--stack memory|lmdb|postgres|full] [--rate R | --fraction F] [--duration S]
#                   [--interval S] [--warmup S] [--limit-kb KB] [--scrape-metrics] [--json FILE] [--debug]
#   scripts/soak.sh --short     what scripts/test.sh runs: full stack, 50/s for 150 s (30 s warm-up),
#                               nobody scraping /metrics (the worst case for the recorder's buffers)
#
# Defaults: --stack full, --fraction 0.5 of the drain rate that a 5 s burst measures first,
# --duration 600 (warm-up included), --interval 10, --warmup 30, --limit-kb 0.5. The node is not
# scraped unless --scrape-metrics (then /metrics at every row, as Prometheus would).
#
# Stacks: memory (in-memory store and queue), lmdb (the server's default: LmdbStore + LmdbCache
# in a throwaway directory under target/soak/, in-memory queue), postgres (PgStore + in-memory queue), full
# (PgStore + RabbitMQ). The durable stacks use NAXOS_TEST_POSTGRES_URL / NAXOS_TEST_AMQP_URL
# (as scripts/test.sh exports them) or start a throwaway PostgreSQL and RabbitMQ; each run gets
# its own database (dropped after) and its own AMQP prefix. The server is the release build
# (--debug: the debug one, ≈ 4× the CPU per execution). Logs, the server's final /metrics and
# the JSON land in target/soak/.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

stack=full rate= fraction=0.5 duration=600 interval=10 warmup=30 limit=0.5 json= profile=release scrape=
while [ $# -gt 0 ]; do
  case "$1" in
    --stack) stack=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --fraction) fraction=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --limit-kb) limit=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    --scrape-metrics) scrape=1; shift ;;
    --debug) profile=debug; shift ;;
    # ≈ 6,000 executions after the warm-up: fewer leave the figure within reach of RssAnon's own
    # noise (BENCHMARKS.md, "Soak"); the debug server cannot hold 50/s on a busy 2-core machine.
    # Not scraped: the metrics recorder's own upkeep must keep its buffers bounded (they held
    # ≈ 0.21 KiB per execution until a scrape before it had one).
    --short) stack=full rate=50 duration=150 interval=10 warmup=30 profile=release scrape=; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$stack" in memory|lmdb|postgres|full) ;; *) echo "soak.sh: --stack is memory, lmdb, postgres or full" >&2; exit 2 ;; esac

if [ "$profile" = release ]; then cargo build -q --release --example server --example loadgen
else cargo build -q --example server --example loadgen; fi
bin=${CARGO_TARGET_DIR:-target}/$profile/examples
out=target/soak
mkdir -p "$out"
run=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:8])')

unset NAXOS_POSTGRES_URL NAXOS_AMQP_URL NAXOS_RABBITMQ_URL NAXOS_AMQP_PREFIX NAXOS_LMDB_PATH NAXOS_STORE
case "$stack" in
  memory) export NAXOS_STORE=memory ;;
  # The store's data (lmdb) or the node's definition cache (postgres, full), removed after.
  *) export NAXOS_LMDB_PATH=$out/lmdb-$run ;;
esac
db_url=
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "${NAXOS_LMDB_PATH:-}" ]; then rm -rf "$NAXOS_LMDB_PATH"; fi
  if [ -n "$db_url" ]; then psql -q "$NAXOS_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS soak_$run WITH (FORCE)" >/dev/null 2>&1 || true; fi
  if [ -n "${own_services:-}" ]; then scripts/services.sh stop; fi
}
trap cleanup EXIT

if [ "$stack" = postgres ] || [ "$stack" = full ]; then
  if [ -z "${NAXOS_TEST_POSTGRES_URL:-}" ] || { [ "$stack" = full ] && [ -z "${NAXOS_TEST_AMQP_URL:-}" ]; }; then
    export NAXOS_SERVICES_DIR
    NAXOS_SERVICES_DIR=$(mktemp -d /tmp/naxos-services.XXXXXX)
    own_services=1
    eval "$(scripts/services.sh start postgres rabbitmq)"
  fi
  psql -q "$NAXOS_TEST_POSTGRES_URL" -c "CREATE DATABASE soak_$run" >/dev/null
  db_url=${NAXOS_TEST_POSTGRES_URL%/*}/soak_$run
  export NAXOS_POSTGRES_URL=$db_url
  if [ "$stack" = full ]; then
    export NAXOS_AMQP_URL=$NAXOS_TEST_AMQP_URL NAXOS_AMQP_PREFIX=soak-$run
  fi
fi

# The server on a free port; its banner (stdout) names the address.
NAXOS_SERVER_PORT=0 NAXOS_NODE_ID=soak-$run RUST_LOG=${RUST_LOG:-warn} \
  "$bin/server" >"$out/server-$run.out" 2>"$out/server-$run.log" &
server_pid=$!
url=
for _ in $(seq 300); do
  url=$(grep -o 'http://[0-9.:]*' "$out/server-$run.out" 2>/dev/null || true)
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$out/server-$run.log" >&2; exit 1; }
  sleep 0.2
done
[ -n "$url" ] || { echo "soak.sh: the server did not start" >&2; exit 1; }
echo "== soak: stack $stack, $profile server pid $server_pid at $url (log $out/server-$run.log)"

args=(--url "$url" --server-pid "$server_pid" --duration "$duration" --interval "$interval"
      --warmup "$warmup" --limit-kb "$limit" --params '{"sleepMs":0}')
if [ -n "$rate" ]; then args+=(--rate "$rate"); else args+=(--fraction "$fraction"); fi
[ -n "$db_url" ] && args+=(--postgres-url "$db_url")
[ -n "$scrape" ] && args+=(--scrape-metrics)
args+=(--json "${json:-$out/soak-$stack-$run.json}")
status=0
"$bin/loadgen" soak "${args[@]}" || status=$?
curl -s "$url/metrics" >"$out/metrics-$run.txt" || true
exit "$status"
