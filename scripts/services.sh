#!/usr/bin/env bash
# Throwaway PostgreSQL and RabbitMQ servers on loopback for the tests.
#
#   eval "$(scripts/services.sh start postgres rabbitmq)"  # prints `export NAXOS_TEST_..._URL=...`
#   scripts/services.sh stop                                # stops what `start` started
#   scripts/services.sh stop-rabbitmq | start-rabbitmq     # a broker restart, for the tests
#   scripts/services.sh stop-postgres | start-postgres     # a database restart, for the tests
#
# Each server gets a fresh data dir under $NAXOS_SERVICES_DIR (default: a new temp dir recorded
# in /tmp/naxos-services.current) and a free port. Only processes started here are stopped,
# by the PIDs recorded at start.
set -euo pipefail

STATE_FILE=/tmp/naxos-services.current

log() { printf 'services: %s\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  return 1
}

ensure_postgres() {
  if ! pg_bin >/dev/null; then
    log "installing PostgreSQL from Debian's packages"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
  fi
}

# Runs a command as the postgres OS user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local dir=$1 bin port
  ensure_postgres
  bin=$(pg_bin)
  port=$(free_port)
  mkdir -p "$dir/pg"
  [ "$(id -u)" = 0 ] && chown -R postgres "$dir/pg"
  as_pg "$bin/initdb" -D "$dir/pg/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/pg/initdb.log" 2>&1 \
    || { cat "$dir/pg/initdb.log" >&2; return 1; }
  as_pg "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 60 \
    -o "-p $port -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=500 -c shared_buffers=128MB" start >&2 \
    || { cat "$dir/pg/server.log" >&2; return 1; }
  echo "$port" >"$dir/pg/port"
  log "PostgreSQL on 127.0.0.1:$port (data in $dir/pg/data)"
  echo "export NAXOS_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres"
}

stop_postgres() {
  local dir=$1
  [ -f "$dir/pg/data/postmaster.pid" ] || return 0
  as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
}

# Starts the existing PostgreSQL data dir again, on its port.
restart_postgres() {
  local dir=$1 port
  port=$(cat "$dir/pg/port")
  as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 60 \
    -o "-p $port -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=500 -c shared_buffers=128MB" start >&2
}

RMQ_BIN=/usr/lib/rabbitmq/bin

ensure_rabbitmq() {
  if [ ! -x "$RMQ_BIN/rabbitmq-server" ]; then
    log "installing RabbitMQ from Debian's packages"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >&2
  fi
}

# Runs a RabbitMQ command with the node's own environment (HOME holds its Erlang cookie; set
# here only, since cargo needs the real HOME).
rmq() {
  local dir=$1
  shift
  env HOME="$dir/rmq" \
    RABBITMQ_NODENAME="naxos-$(basename "$dir" | tr -c 'A-Za-z0-9\n' '-')@localhost" \
    RABBITMQ_MNESIA_BASE="$dir/rmq/mnesia" RABBITMQ_LOG_BASE="$dir/rmq/log" \
    RABBITMQ_PID_FILE="$dir/rmq/pid" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/rmq/enabled_plugins" \
    RABBITMQ_CONFIG_FILE="$dir/rmq/rabbitmq.conf" RABBITMQ_DIST_PORT="$(cat "$dir/rmq/dist_port")" \
    "$@"
}

start_rabbitmq() {
  local dir=$1 port
  ensure_rabbitmq
  mkdir -p "$dir/rmq/mnesia" "$dir/rmq/log"
  if [ ! -f "$dir/rmq/port" ]; then
    free_port >"$dir/rmq/port"
    free_port >"$dir/rmq/dist_port"
    echo '[].' >"$dir/rmq/enabled_plugins"
  fi
  port=$(cat "$dir/rmq/port")
  printf 'listeners.tcp.default = 127.0.0.1:%s\n' "$port" >"$dir/rmq/rabbitmq.conf"
  rmq "$dir" "$RMQ_BIN/rabbitmq-server" -detached >&2
  rmq "$dir" "$RMQ_BIN/rabbitmqctl" wait --timeout 120 "$dir/rmq/pid" >/dev/null 2>&1 \
    || { tail -20 "$dir"/rmq/log/*.log >&2; return 1; }
  log "RabbitMQ on 127.0.0.1:$port (data in $dir/rmq)"
  echo "export NAXOS_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$port/%2f"
}

stop_rabbitmq() {
  local dir=$1
  [ -f "$dir/rmq/pid" ] || return 0
  rmq "$dir" "$RMQ_BIN/rabbitmqctl" stop "$dir/rmq/pid" >/dev/null 2>&1 || true
}

case "${1:-}" in
  start)
    shift
    dir=${NAXOS_SERVICES_DIR:-$(mktemp -d /tmp/naxos-services.XXXXXX)}
    mkdir -p "$dir"
    chmod 755 "$dir"
    echo "$dir" >"$STATE_FILE"
    for service in "${@:-postgres}"; do
      case "$service" in
        postgres) start_postgres "$dir" ;;
        rabbitmq) start_rabbitmq "$dir" ;;
        *) log "unknown service $service"; exit 2 ;;
      esac
    done
    echo "export NAXOS_SERVICES_DIR=$dir"
    ;;
  stop)
    dir=${NAXOS_SERVICES_DIR:-$(cat "$STATE_FILE" 2>/dev/null || true)}
    [ -n "$dir" ] && [ -d "$dir" ] || exit 0
    stop_postgres "$dir"
    if [ -f "$dir/rmq/pid" ]; then
      stop_rabbitmq "$dir"
      # The Erlang port mapper that the node started outlives it.
      command -v epmd >/dev/null && epmd -kill >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  stop-rabbitmq|start-rabbitmq|stop-postgres|start-postgres)
    dir=${NAXOS_SERVICES_DIR:?NAXOS_SERVICES_DIR must name the running services}
    case "$1" in
      stop-rabbitmq) stop_rabbitmq "$dir" ;;
      start-rabbitmq) start_rabbitmq "$dir" >/dev/null ;;
      stop-postgres) stop_postgres "$dir" ;;
      start-postgres) restart_postgres "$dir" ;;
    esac
    ;;
  *)
    echo "usage: $0 start [postgres] [rabbitmq] | stop | stop-rabbitmq | start-rabbitmq | stop-postgres | start-postgres" >&2
    exit 2
    ;;
esac
