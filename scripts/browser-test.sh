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

# shellcheck source=lib/example-server.sh
source scripts/lib/example-server.sh

SE_OFFLINE=true "$venv/bin/python" scripts/browser_test.py "http://127.0.0.1:$port" target/dashboard.png
