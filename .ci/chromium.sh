#!/usr/bin/env bash
# Debian's chromium for the dashboard browser test (tests/test_dashboard_browser.py). Idempotent: does nothing
# when /usr/bin/chromium exists. Playwright drives it; `playwright install` (a browser download) is never run.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
/usr/bin/chromium --version
