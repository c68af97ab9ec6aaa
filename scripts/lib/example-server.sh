# Sourced by scripts that need the example server: starts target/debug/examples/server (built
# by `cargo test`, or here if missing) on a free loopback port on its default backends (LMDB,
# in a throwaway data directory) and no API token, waits until /health answers, and stops it
# (and removes the directory) when the calling script exits.
# Sets `port` and `pid`.

server=target/debug/examples/server
[ -x "$server" ] || cargo build -q --example server
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
data=$(mktemp -d /tmp/naxos-example-data.XXXXXX)
env -u NAXOS_POSTGRES_URL -u NAXOS_AMQP_URL -u NAXOS_API_TOKEN -u NAXOS_STORE NAXOS_LMDB_PATH="$data" \
  NAXOS_SERVER_PORT="$port" RUST_LOG=warn "$server" >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
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
