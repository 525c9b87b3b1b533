#!/usr/bin/env bash
# What the notice tests render with (issue 17), installed when missing, like scripts/postgres.sh
# does for PostgreSQL: poppler-utils (pdftotext/pdftoppm read the letters back), Debian's
# chromium and its chromedriver (the HTML email in a real browser), and axe-core from npm (the
# accessibility check, pinned) under var/tools/axe.
#   scripts/notice-tools.sh            install what is missing; prints nothing when all is there
#   scripts/notice-tools.sh axe-path   the path of axe.min.js
set -euo pipefail
cd "$(dirname "$0")/.."
AXE_VERSION=4.14.1
AXE_DIR=var/tools/axe
AXE_JS=$AXE_DIR/node_modules/axe-core/axe.min.js

log() { printf 'notice-tools: %s\n' "$*" >&2; }

apt_install() {
  log "installing $* from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  if [[ $(id -u) != 0 ]]; then log "not root: install $* yourself"; exit 1; fi
  apt-get update -qq
  apt-get install -y -qq "$@" >/dev/null
}

install() {
  local missing=()
  command -v pdftotext >/dev/null && command -v pdftoppm >/dev/null || missing+=(poppler-utils)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
  if [[ ! -f $AXE_JS ]] || ! grep -q "axe v$AXE_VERSION" "$AXE_JS"; then
    command -v npm >/dev/null || apt_install npm
    log "installing axe-core@$AXE_VERSION from npm"
    mkdir -p "$AXE_DIR"
    npm install --silent --no-audit --no-fund --prefix "$AXE_DIR" "axe-core@$AXE_VERSION" >/dev/null
  fi
}

case "${1:-install}" in
  install) install ;;
  axe-path) echo "$PWD/$AXE_JS" ;;
  *) echo "usage: $0 [install|axe-path]" >&2; exit 2 ;;
esac
