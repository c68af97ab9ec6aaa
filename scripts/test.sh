#!/usr/bin/env bash
# The one test command, locally and in CI: formatting, lints, then every test of the workspace.
# Later backends add their services (PostgreSQL, RabbitMQ) here, started on loopback and stopped
# on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test"
cargo test --workspace --all-features
