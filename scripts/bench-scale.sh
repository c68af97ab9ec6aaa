#!/usr/bin/env bash
# Scale-out on one PostgreSQL + RabbitMQ: 1, 2 and 4 worker processes of the example server
# (release, NAXOS_ROLE=worker, NAXOS_WORKER_CONCURRENCY slots each) drain `count` diamonds
# (sample-2) whose tasks sleep 20 ms, submitted through one API process (NAXOS_ROLE=api) in
# batches of 100 (execute-batch). I/O-bound on purpose: on one machine this shows whether the
# coordination (claims, fan-in, the queue) stays out of the way as workers are added, not CPU
# scaling. Each process count gets a database and an AMQP prefix of its own.
#
#   scripts/bench-scale.sh [count] [slots per worker]      defaults: 2000 diamonds, 8 slots
#
# Prints diamonds/s per worker count and the ideal (slots × workers / 20 ms / 4 tasks); JSON in
# target/bench/scale.json. Uses NAXOS_TEST_POSTGRES_URL / NAXOS_TEST_AMQP_URL or starts its own
# throwaway PostgreSQL and RabbitMQ.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-2000}
slots=${2:-8}
cargo build -q --release --example server
bin=${CARGO_TARGET_DIR:-target}/release/examples/server
out=target/bench
mkdir -p "$out"
run=$(python3 -c 'import uuid; print(uuid.uuid4().hex[:8])')

pids=()
addr=
stop_nodes() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop_nodes
  rm -rf "$out/scale-$run"
  if [ -n "${own_services:-}" ]; then scripts/services.sh stop; fi
}
trap cleanup EXIT
if [ -z "${NAXOS_TEST_POSTGRES_URL:-}" ] || [ -z "${NAXOS_TEST_AMQP_URL:-}" ]; then
  export NAXOS_SERVICES_DIR
  NAXOS_SERVICES_DIR=$(mktemp -d /tmp/naxos-services.XXXXXX)
  own_services=1
  eval "$(scripts/services.sh start postgres rabbitmq)"
fi
unset NAXOS_STORE NAXOS_RABBITMQ_URL

# Starts one node with `role` (and its name); sets `addr` to its address once it serves.
node() {
  local role=$1 name=$2
  local dir=$out/scale-$run/$name
  mkdir -p "$dir"
  NAXOS_ROLE=$role NAXOS_NODE_ID=$name NAXOS_SERVER_PORT=0 NAXOS_LMDB_PATH=$dir/cache \
    NAXOS_WORKER_CONCURRENCY=$slots RUST_LOG=warn "$bin" >"$dir/out" 2>"$dir/log" &
  pids+=($!)
  for _ in $(seq 300); do
    if grep -q -o 'http://[0-9.:]*' "$dir/out" 2>/dev/null; then
      addr=$(grep -o 'http://[0-9.:]*' "$dir/out" | head -1)
      return
    fi
    sleep 0.2
  done
  echo "bench-scale.sh: node $name did not start (log $dir/log)" >&2
  exit 1
}

results=()
for workers in 1 2 4; do
  psql -q "$NAXOS_TEST_POSTGRES_URL" -c "CREATE DATABASE scale_${run}_$workers" >/dev/null
  export NAXOS_POSTGRES_URL=${NAXOS_TEST_POSTGRES_URL%/*}/scale_${run}_$workers
  export NAXOS_AMQP_URL=$NAXOS_TEST_AMQP_URL NAXOS_AMQP_PREFIX=scale-$run-$workers
  node api "api-$workers"
  api=$addr
  for w in $(seq "$workers"); do node worker "worker-$workers-$w"; done
  result=$(python3 - "$api" "$count" "$workers" "$slots" <<'PY'
import json, sys, time, urllib.request
api, count, workers, slots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def call(method, path, body=None):
    req = urllib.request.Request(api + path, method=method, data=body,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)
started = time.monotonic()
left = count
while left:
    n = min(100, left)
    call("POST", "/api/v1/jobs/sample-2/execute-batch", json.dumps([{"sleepMs": 20}] * n).encode())
    left -= n
submitted = time.monotonic() - started
while True:
    status = call("GET", "/api/v1/system/status")
    if status["executedJobs"] + status["failedJobs"] >= count:
        break
    if time.monotonic() - started > 900:
        sys.exit("bench-scale: the executions did not finish within 900 s")
    time.sleep(0.05)
wall = time.monotonic() - started
ideal = workers * slots / 0.020 / 4
print(f"{workers} worker(s) x {slots} slots: {count / wall:.0f} diamonds/s of 20 ms tasks (ideal {ideal:.0f}), "
      f"{count} in {wall:.1f} s (submitted in {submitted:.1f} s), {status['failedJobs']} failed", file=sys.stderr)
print(json.dumps({"workers": workers, "slotsPerWorker": slots, "count": count, "wallSeconds": wall,
                  "submitSeconds": submitted, "diamondsPerSecond": count / wall, "idealPerSecond": ideal,
                  "failed": status["failedJobs"]}))
PY
)
  stop_nodes
  psql -q "$NAXOS_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS scale_${run}_$workers WITH (FORCE)" >/dev/null 2>&1 || true
  results+=("$result")
done
printf '%s\n' "${results[@]}" | python3 -c 'import json,sys; json.dump([json.loads(l) for l in sys.stdin], open(sys.argv[1], "w"), indent=2)' "$out/scale.json"
