#!/usr/bin/env bash
# The deploy checks' tools, built from pinned Go modules with the machine's Go and cached under
# var/tools/ (idempotent: a tool whose pinned version is already built is left alone).
#   deploy/tools/install.sh [kustomize|promtool ...]   (no argument: all)
# Prints nothing on success but where each tool is; the first build of promtool takes minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TOOLS=${PANUI_TOOLS:-$ROOT/var/tools}

# name  module@version (versions chosen to build with Go 1.26; v5.8.3+ of kustomize needs Go 1.27)
declare -A MODULE=(
  [kustomize]=sigs.k8s.io/kustomize/kustomize/v5@v5.8.1
  [promtool]=github.com/prometheus/prometheus/cmd/promtool@v0.316.0
)
# promtool without Prometheus' service-discovery plugins (cloud SDKs): rule checks need none.
declare -A TAGS=([promtool]=remove_all_sd)

log() { printf 'deploy-tools: %s\n' "$*" >&2; }

install_one() {
  local name=$1 module=${MODULE[$1]:?unknown tool $1}
  local version=${module##*@}
  local dir=$TOOLS/$name-$version
  if [[ -x $dir/$name ]]; then echo "$dir/$name"; return 0; fi
  command -v go >/dev/null || { log "go not found: the Go toolchain builds $name ($module)"; exit 1; }
  log "building $name from $module into $dir"
  rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
  # GOTOOLCHAIN=local: the machine's Go, never a downloaded one; GOFLAGS keeps builds reproducible.
  GOBIN=$dir.tmp GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false" CGO_ENABLED=0 \
    go install -tags="${TAGS[$name]:-}" "$module" >&2
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  echo "$dir/$name"
}

if [[ $# -eq 0 ]]; then set -- kustomize promtool; fi
for tool in "$@"; do install_one "$tool"; done
