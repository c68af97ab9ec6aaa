#!/usr/bin/env bash
# Throwaway PostgreSQL (and, later, RabbitMQ) servers on loopback for the tests.
#
#   eval "$(scripts/services.sh start postgres)"   # prints `export NAXOS_TEST_POSTGRES_URL=...`
#   scripts/services.sh stop                        # stops what `start` started
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
  as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m fast -w stop >&2 || true
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
        *) log "unknown service $service"; exit 2 ;;
      esac
    done
    echo "export NAXOS_SERVICES_DIR=$dir"
    ;;
  stop)
    dir=${NAXOS_SERVICES_DIR:-$(cat "$STATE_FILE" 2>/dev/null || true)}
    [ -n "$dir" ] && [ -d "$dir" ] || exit 0
    stop_postgres "$dir"
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start [postgres]... | stop" >&2
    exit 2
    ;;
esac
