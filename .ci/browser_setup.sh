#!/usr/bin/env bash
# Installs the headless browser the dashboard's browser test drives: Debian's chromium and
# chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver). Idempotent: returns at once when
# both are already there. Never downloads a browser build of its own.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "browser_setup.sh: needs root to apt-get install chromium chromium-driver; run it as root or install them yourself." >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version 2>/dev/null  # Debian's wrapper script warns on stderr
