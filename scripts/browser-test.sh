#!/usr/bin/env bash
# The dashboard in headless Chromium (Debian's chromium and chromium-driver, installed when
# missing), driven by selenium from PyPI, against the example server on a free loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "installing chromium and chromium-driver from Debian's packages" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
fi
venv=target/browser-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check selenium==4.27.1
fi

server=target/debug/examples/server
[ -x "$server" ] || cargo build -q --example server
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
env -u NAXOS_POSTGRES_URL -u NAXOS_AMQP_URL -u NAXOS_API_TOKEN NAXOS_SERVER_PORT="$port" RUST_LOG=warn "$server" >/dev/null 2>&1 &
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

SE_OFFLINE=true "$venv/bin/python" scripts/browser_test.py "http://127.0.0.1:$port" target/dashboard.png
