#!/usr/bin/env bash
# Pruning under load on PostgreSQL (BENCHMARKS.md, "Pruning under load"): each round runs the
# diamond load twice on a table that holds SEED finished executions (each with its 4 tasks and
# 4 attempt records): once as the control (they stay) and once while they are pruned through
# Store::prune in batches of 1,000, back to back. The order alternates from round to round, so
# that a neighbour's build on the shared machine weighs on both alike. JSON in target/bench/.
#
#   scripts/bench-prune.sh [ROUNDS] [SEED] [COUNT]     defaults: 3 rounds, 100000, 3000
#
# Uses NAXOS_TEST_POSTGRES_URL, or starts a throwaway PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; seed=${2:-100000}; count=${3:-3000}

cargo build -q --release --example loadgen
if [ -z "${NAXOS_TEST_POSTGRES_URL:-}" ]; then
  export NAXOS_SERVICES_DIR
  NAXOS_SERVICES_DIR=$(mktemp -d /tmp/naxos-services.XXXXXX)
  trap 'scripts/services.sh stop' EXIT
  eval "$(scripts/services.sh start postgres)"
fi
export NAXOS_POSTGRES_URL=$NAXOS_TEST_POSTGRES_URL
out=target/bench
mkdir -p "$out"

schemas() { psql -Atq "$NAXOS_POSTGRES_URL" -c "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'loadgen\_%' ORDER BY 1"; }
run() { # name, extra flags; drops the schema the run made (the seeded rows are large)
  local before
  before=$(schemas)
  target/release/examples/loadgen --stack postgres --workload diamond --count "$count" --alone 20 \
    --seed-finished "$seed" "${@:2}" --json "$out/prune-$1.json" 2>/dev/null | sed "s/^/$1: /"
  for s in $(comm -13 <(echo "$before") <(schemas)); do
    psql -q "$NAXOS_POSTGRES_URL" -c "SET client_min_messages = warning" -c "DROP SCHEMA $s CASCADE"
  done
}
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then
    run "control-$r"; run "prune-$r" --prune
  else
    run "prune-$r" --prune; run "control-$r"
  fi
done

python3 - "$out" "$rounds" <<'PY'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
load = lambda n: json.load(open(f"{out}/prune-{n}.json"))
print("round  control exec/s  with prune exec/s  ratio  prune s  batch p50/max ms  burst s")
for r in range(1, rounds + 1):
    c, p = load(f"control-{r}"), load(f"prune-{r}")
    q = p["prune"]
    print(f"{r:5}  {c['executionsPerSecond']:14.1f}  {p['executionsPerSecond']:17.1f}  "
          f"{p['executionsPerSecond'] / c['executionsPerSecond']:5.2f}  {q['seconds']:7.1f}  "
          f"{q['batchMs']['p50']:.0f}/{q['batchMs']['max']:.0f}  {p['wallSeconds']:7.1f}")
PY
