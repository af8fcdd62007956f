#!/usr/bin/env bash
# Install Azurite (Microsoft's Azure Storage emulator, from npm) into .cache/azurite, once.
#
#   bash tests/install_azurite.sh        # prints the path of azurite-blob
#
# The Azure tests (tests/cloud_servers.py) call this themselves; CI calls it first so that a
# failed install shows up as an install failure. Exit 3: npm is missing (the tests then skip).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=.cache/azurite
bin="$prefix/node_modules/.bin/azurite-blob"
if [ ! -x "$bin" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm is not installed: install Node.js 18+ (Debian: apt-get install nodejs npm) for the Azure tests" >&2
    exit 3
  fi
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "azurite@>=3.30.0 <4" >&2
fi
echo "$PWD/$bin"
