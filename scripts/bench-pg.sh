#!/usr/bin/env bash
# PostgreSQL figures for BENCHMARKS.md, from one run on one machine:
#   1. pgbench: single-row UPDATE by key, 4 clients, synchronous_commit on (the database's limit);
#   2. the engine on PgStore + the in-memory Queue, diamonds of no-op tasks (benches/pg_engine.rs).
# Starts a throwaway PostgreSQL (fsync and synchronous_commit at their durable defaults) and
# stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bench pg_engine >/dev/null 2>&1 || cargo build --release --bench pg_engine

export NAXOS_SERVICES_DIR
NAXOS_SERVICES_DIR=$(mktemp -d /tmp/naxos-services.XXXXXX)
trap 'scripts/services.sh stop' EXIT
eval "$(scripts/services.sh start postgres)"
url=$NAXOS_TEST_POSTGRES_URL

echo "== pgbench: single-row UPDATE by key, 4 clients, 10 s"
pgbench -q -i -s 2 "$url" >/dev/null 2>&1
script=$(mktemp)
printf '\\set aid random(1, 200000)\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n' >"$script"
pgbench -n -c 4 -j 2 -T 10 -f "$script" "$url" 2>/dev/null | grep -E "^tps|latency average"
rm -f "$script"

echo "== naxos engine on PgStore"
NAXOS_BENCH_POSTGRES_URL=$url cargo bench --bench pg_engine 2>/dev/null | grep pg_engine
