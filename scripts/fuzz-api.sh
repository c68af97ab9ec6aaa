#!/usr/bin/env bash
# A bounded fuzz pass of the REST API from its own OpenAPI document (schemathesis, from PyPI,
# in a venv under target/). Starts the example server (built by `cargo test`) on a free
# loopback port on its default backends, fuzzes every operation, and stops the server.
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

# shellcheck source=lib/example-server.sh
source scripts/lib/example-server.sh

"$venv/bin/st" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --checks all --exclude-checks positive_data_acceptance,negative_data_rejection \
  --phases examples,fuzzing --max-examples "$examples" --workers 2
