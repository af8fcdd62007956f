#!/usr/bin/env bash
# Install Debian's chromium (headless browser for the run report's HTML check), once.
#
#   bash tests/install_chromium.sh       # prints the path of chromium
#
# tests/test_run_report.py renders out/_report.html with it; without chromium that test skips,
# except in CI (.ci/run calls this first and sets CHROMIUM_REQUIRED=1, so a missing browser fails).
# Exit 3: chromium is missing and cannot be installed here (not root, or no apt-get).
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; exit 0; fi
done
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "chromium is not installed and apt-get is not usable here: install Debian's chromium package" >&2
  exit 3
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends chromium >&2 || { apt-get update >&2 && apt-get install -y --no-install-recommends chromium >&2; }
command -v chromium
