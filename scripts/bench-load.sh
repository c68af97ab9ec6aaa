#!/usr/bin/env bash
# The load bench, from one run on one machine: pgbench's single-row commit rate, naxos on each
# stack (in-memory, LMDB, PostgreSQL, PostgreSQL + RabbitMQ) and workload (examples/loadgen), and the
# same diamonds on Celery (benches/celery, from PyPI into target/celery-venv) on the same
# RabbitMQ with PostgreSQL as its result backend, and on apalis 1.0 (benches/apalis, its own
# crate outside the workspace; the full run only) on the same PostgreSQL. Prints the ratios;
# JSON lands in target/bench/.
#
#   scripts/bench-load.sh           the full run (a few minutes)
#   scripts/bench-load.sh --short   tiny counts; scripts/test.sh runs this so the bench cannot rot
#
# Uses the services scripts/test.sh started (NAXOS_TEST_POSTGRES_URL, NAXOS_TEST_AMQP_URL) or
# starts its own throwaway PostgreSQL and RabbitMQ.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --short ]; then
  mem=500; durable=100; fanout=20; celery=20; alone=10; seconds=2
  cargo build -q --example loadgen
  loadgen=target/debug/examples/loadgen
else
  mem=20000; durable=2000; fanout=200; celery=1000; alone=200; seconds=10
  cargo build -q --release --example loadgen
  loadgen=target/release/examples/loadgen
fi

if [ -z "${NAXOS_TEST_POSTGRES_URL:-}" ] || [ -z "${NAXOS_TEST_AMQP_URL:-}" ]; then
  export NAXOS_SERVICES_DIR
  NAXOS_SERVICES_DIR=$(mktemp -d /tmp/naxos-services.XXXXXX)
  trap 'scripts/services.sh stop' EXIT
  eval "$(scripts/services.sh start postgres rabbitmq)"
fi
pg=$NAXOS_TEST_POSTGRES_URL
server=${pg%/*}
out=target/bench
mkdir -p "$out"
run=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:8])')

echo "== pgbench: single-row UPDATE by key, 4 clients, ${seconds} s"
psql -q "$pg" -c "CREATE DATABASE pgbench_$run" >/dev/null
pgbench -q -i -s 2 "$server/pgbench_$run" >/dev/null 2>&1
script=$(mktemp)
printf '\\set aid random(1, 200000)\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n' >"$script"
pgbench -n -c 4 -j 2 -T "$seconds" -f "$script" "$server/pgbench_$run" 2>/dev/null | tee "$out/pgbench.txt" | grep -E "^tps"
rm -f "$script"

echo "== naxos (examples/loadgen)"
export NAXOS_POSTGRES_URL=$pg NAXOS_AMQP_URL=$NAXOS_TEST_AMQP_URL
lg() { "$loadgen" --alone "$alone" "$@" 2>/dev/null; }
lg --stack memory --workload diamond --count "$mem" --json "$out/memory-diamond.json"
lg --stack memory --workload chain --count "$((mem / 2))" --json "$out/memory-chain.json"
lg --stack memory --workload fanout --count "$fanout" --json "$out/memory-fanout.json"
lg --stack memory --workload sleep --count "$durable" --concurrency 64 --json "$out/memory-sleep.json"
lg --stack memory --via http --workload diamond --count "$((mem / 4))" --json "$out/memory-http-diamond.json"
lg --stack lmdb --workload diamond --count "$durable" --json "$out/lmdb-diamond.json"
lg --stack lmdb --via http --workload diamond --count "$durable" --json "$out/lmdb-http-diamond.json"
lg --stack postgres --workload diamond --count "$durable" --json "$out/postgres-diamond.json"
lg --stack full --workload diamond --count "$durable" --json "$out/full-diamond.json"
lg --stack full --via http --workload diamond --count "$durable" --json "$out/full-http-diamond.json"
lg --stack full --workload chain --count "$((durable / 4))" --json "$out/full-chain.json"
# Ready tasks run on the node where they became ready while it has spare slots (run_ready_here).
lg --stack full --workload diamond --count "$durable" --ready-here --json "$out/full-here-diamond.json"
lg --stack full --via http --workload diamond --count "$durable" --ready-here --json "$out/full-http-here-diamond.json"
# The same diamonds submitted 100 at a time (execute-batch / Engine::execute_many).
lg --stack postgres --workload diamond --count "$durable" --batch 100 --json "$out/postgres-batch-diamond.json"
lg --stack full --via http --workload diamond --count "$durable" --batch 100 --json "$out/full-http-batch-diamond.json"

echo "== Celery (benches/celery)"
venv=target/celery-venv
if [ ! -x "$venv/bin/celery" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check celery==5.7.0 sqlalchemy psycopg2-binary
fi
psql -q "$pg" -c "CREATE DATABASE celery_$run" >/dev/null
export NAXOS_BENCH_AMQP_URL=$NAXOS_TEST_AMQP_URL
export NAXOS_BENCH_CELERY_DB="${server/postgres:/postgresql+psycopg2:}/celery_$run"
(cd benches/celery && exec "../../$venv/bin/celery" -A bench_tasks worker --concurrency 2 --pool prefork \
  --queues naxos_bench_celery --without-gossip --without-mingle --loglevel warning >"../../$out/celery-worker.log" 2>&1) &
worker=$!
(cd benches/celery && "../../$venv/bin/python" bench_diamond.py "$celery" "$((alone / 10 + 3))" "../../$out/celery-diamond.json")
kill -TERM "$worker" 2>/dev/null; wait "$worker" 2>/dev/null || true

if [ "${1:-}" != --short ]; then
  # apalis 1.0, the closest Rust peer: its own crate and lock file, outside the workspace.
  echo "== apalis (benches/apalis)"
  CARGO_TARGET_DIR=target/apalis cargo build -q --release --manifest-path benches/apalis/Cargo.toml
  psql -q "$pg" -c "CREATE DATABASE apalis_$run" >/dev/null
  target/apalis/release/naxos-bench-apalis "$server/apalis_$run" "$durable" "$alone" "$out/apalis-diamond.json"
fi

echo "== side by side"
python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
load = lambda name: json.load(open(f"{out}/{name}.json"))
tps = float(re.search(r"tps = ([0-9.]+)", open(f"{out}/pgbench.txt").read()).group(1))
celery, full, pg, mem = load("celery-diamond"), load("full-diamond"), load("postgres-diamond"), load("memory-diamond")
lmdb = load("lmdb-diamond")
print(f"diamonds/s: naxos in-memory {mem['executionsPerSecond']:.0f}, naxos LMDB {lmdb['executionsPerSecond']:.0f}, "
      f"naxos PostgreSQL {pg['executionsPerSecond']:.0f}, "
      f"naxos PostgreSQL+RabbitMQ {full['executionsPerSecond']:.0f}, Celery {celery['executionsPerSecond']:.1f}")
print(f"naxos PostgreSQL+RabbitMQ / Celery: {full['executionsPerSecond'] / celery['executionsPerSecond']:.1f}x diamonds/s")
print(f"one diamond alone, p50: naxos LMDB {lmdb['alone']['latencyMs']['p50']:.1f} ms, "
      f"naxos PostgreSQL+RabbitMQ {full['alone']['latencyMs']['p50']:.1f} ms, Celery {celery['alone']['latencyMs']['p50']:.0f} ms")
here, hereh = load("full-here-diamond"), load("full-http-here-diamond")
print(f"ready tasks run where they became ready (--ready-here), PostgreSQL+RabbitMQ: diamonds/s "
      f"{here['executionsPerSecond']:.0f} (through the queue {full['executionsPerSecond']:.0f}), via HTTP "
      f"{hereh['executionsPerSecond']:.0f}; one alone p50 {here['alone']['latencyMs']['p50']:.1f} ms "
      f"(through the queue {full['alone']['latencyMs']['p50']:.1f} ms)")
pgb, fullb = load("postgres-batch-diamond"), load("full-http-batch-diamond")
print(f"submitted 100 at a time, diamonds/s: naxos PostgreSQL {pgb['executionsPerSecond']:.0f} "
      f"(one at a time {pg['executionsPerSecond']:.0f}), naxos PostgreSQL+RabbitMQ via HTTP {fullb['executionsPerSecond']:.0f} "
      f"(one at a time {load('full-http-diamond')['executionsPerSecond']:.0f})")
try:
    apalis = load("apalis-diamond")
    print(f"naxos PostgreSQL / apalis 1.0 (apalis-postgres, same PostgreSQL): "
          f"{pg['executionsPerSecond'] / apalis['executionsPerSecond']:.1f}x diamonds/s "
          f"({pg['executionsPerSecond']:.0f} / {apalis['executionsPerSecond']:.0f}); one alone p50 "
          f"{pg['alone']['latencyMs']['p50']:.1f} / {apalis['alone']['latencyMs']['p50']:.1f} ms")
except FileNotFoundError:
    pass  # --short skips apalis
print(f"tasks/s as a fraction of pgbench's {tps:.0f} commits/s: PostgreSQL {pg['tasksPerSecond'] / tps:.1%}, "
      f"PostgreSQL+RabbitMQ {full['tasksPerSecond'] / tps:.1%}")
PY
