#!/usr/bin/env bash
# The one test command, locally and in CI: formatting, lints, then every test of the workspace
# against real services. It installs what is missing (PostgreSQL and RabbitMQ from Debian's
# packages), starts
# throwaway servers on loopback with fresh data dirs, runs the tests, and stops the servers.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "starting PostgreSQL and RabbitMQ"
export NAXOS_SERVICES_DIR
NAXOS_SERVICES_DIR=$(mktemp -d /tmp/naxos-services.XXXXXX)
trap 'scripts/services.sh stop' EXIT
eval "$(scripts/services.sh start postgres rabbitmq)"

step "cargo test"
cargo test --workspace --all-features
