#!/usr/bin/env bash
# RabbitMQ figures for BENCHMARKS.md: raw lapin against AmqpQueue on one throwaway broker
# (benches/amqp_queue.rs). Starts the broker and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bench amqp_queue >/dev/null 2>&1 || cargo build --release --bench amqp_queue

export NAXOS_SERVICES_DIR
NAXOS_SERVICES_DIR=$(mktemp -d /tmp/naxos-services.XXXXXX)
trap 'scripts/services.sh stop' EXIT
eval "$(scripts/services.sh start rabbitmq)"

NAXOS_BENCH_AMQP_URL=$NAXOS_TEST_AMQP_URL cargo bench --bench amqp_queue 2>/dev/null | grep '^amqp'
