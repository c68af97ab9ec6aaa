#!/usr/bin/env bash
# The one test command, locally and in CI: formatting, lints, docs, then every test of the workspace
# against real services, then a fuzz pass of the API and the dashboard in a real browser. It
# installs what is missing (PostgreSQL, RabbitMQ and Chromium from Debian's packages; schemathesis
# and selenium from PyPI into venvs under target/), starts
# throwaway servers on loopback with fresh data dirs, runs the tests, the short load bench and
# the short soak, and stops the servers.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

# Every public item's docs build without a broken link or a bad code block; the examples in
# them run as doc tests with the workspace's tests below.
step "cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

step "starting PostgreSQL and RabbitMQ"
export NAXOS_SERVICES_DIR
NAXOS_SERVICES_DIR=$(mktemp -d /tmp/naxos-services.XXXXXX)
trap 'scripts/services.sh stop' EXIT
eval "$(scripts/services.sh start postgres rabbitmq)"

step "cargo test"
log=$(mktemp)
cargo test --workspace --all-features 2>&1 | tee "$log"

step "API fuzz pass (schemathesis, from the OpenAPI document)"
scripts/fuzz-api.sh

step "dashboard in headless Chromium"
scripts/browser-test.sh

step "load bench, short mode (naxos on every stack, pgbench and Celery side by side)"
scripts/bench-load.sh --short

# One node on PostgreSQL + RabbitMQ at 50 sample-2 executions/s for 150 s: fails when the
# node's RssAnon grows more than 0.5 KiB per execution after the warm-up (a release build: the
# debug server cannot hold the rate on a busy 2-core machine; see BENCHMARKS.md, "Soak").
step "soak, short mode (memory per execution over time, full stack)"
scripts/soak.sh --short

# One closing line with the totals of every cargo test binary and doc-test run above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;/) p += $(i-1); if ($(i) ~ /^failed;/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
