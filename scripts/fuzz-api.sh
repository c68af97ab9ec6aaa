#!/usr/bin/env bash
# A bounded fuzz pass of the REST API from its own OpenAPI document (schemathesis, from PyPI,
# in a venv under target/). Starts the example server (built by `cargo test`) on a free
# loopback port with in-memory backends, fuzzes every operation, and stops the server.
#
# Checks: every check schemathesis has (no 5xx, status codes, content types, response
# schemas, headers, unsupported methods, ...) except the two data-acceptance heuristics:
# a schema-valid definition is legitimately refused with 422 when its functions are not
# registered or its graph has a cycle (no JSON Schema can say that), and negative query
# values that serialize to nothing arrive as no parameter at all.
set -euo pipefail
cd "$(dirname "$0")/.."

examples=${NAXOS_FUZZ_EXAMPLES:-30}
venv=target/fuzz-venv
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check schemathesis==4.32.5
fi

server=target/debug/examples/server
[ -x "$server" ] || cargo build -q --example server
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
env -u NAXOS_POSTGRES_URL -u NAXOS_AMQP_URL NAXOS_SERVER_PORT="$port" RUST_LOG=warn "$server" >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1)
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("the server did not come up")
PY

"$venv/bin/st" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --checks all --exclude-checks positive_data_acceptance,negative_data_rejection \
  --phases examples,fuzzing --max-examples "$examples" --workers 2
