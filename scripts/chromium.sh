#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the console's browser test (tests/console): installs
# Debian's `chromium` and `chromium-driver` packages when missing, as scripts/postgres.sh does for
# PostgreSQL, and prints the two paths. Needs root (or the packages installed already).
set -euo pipefail
log() { printf 'chromium: %s\n' "$*" >&2; }
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  log "installing chromium and chromium-driver from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
fi
command -v chromium
command -v chromedriver
