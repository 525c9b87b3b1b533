#!/usr/bin/env bash
# Local PostgreSQL: installs Debian's server package when missing, runs a project-owned cluster
# ("panui", port PANUI_PG_PORT, default 55432) and creates the role and one database per service.
#   scripts/postgres.sh up|down|status|url
# When PANUI_PG_ADMIN_URL is set, nothing is installed or started: that server is used.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${PANUI_PG_PORT:-55432}
CLUSTER=panui
ROLE=panui
PASSWORD=${PANUI_PG_PASSWORD:-panui-local-dev}   # local loopback-only cluster; never a real credential
DATABASES=(panui_intake panui_dedupe panui_dispatch)
PY=${PANUI_PYTHON:-$ROOT/.venv/bin/python}

log() { printf 'postgres: %s\n' "$*" >&2; }
admin_url() { echo "${PANUI_PG_ADMIN_URL:-postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/postgres}"; }
as_postgres() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

version() { ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1; }

install() {
  [[ -n $(version) && -x /usr/lib/postgresql/$(version)/bin/postgres ]] && command -v pg_createcluster >/dev/null && return 0
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql postgresql-contrib >/dev/null
}

up() {
  if [[ -n ${PANUI_PG_ADMIN_URL:-} ]]; then log "PANUI_PG_ADMIN_URL is set: using that server"; return 0; fi
  install
  local v; v=$(version)
  if ! pg_lsclusters -h | awk '{print $2}' | grep -qx "$CLUSTER"; then
    log "creating cluster $v/$CLUSTER on port $PORT"
    pg_createcluster "$v" "$CLUSTER" --port "$PORT" -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    # Small box: modest memory, many short-lived test databases.
    cat > "/etc/postgresql/$v/$CLUSTER/conf.d/panui.conf" <<CONF
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
CONF
  fi
  if ! pg_lsclusters -h | awk -v c="$CLUSTER" '$2==c {print $4}' | grep -qx online; then
    log "starting cluster $v/$CLUSTER"
    pg_ctlcluster "$v" "$CLUSTER" start
  fi
  as_postgres psql -q -p "$PORT" -v ON_ERROR_STOP=1 -d postgres <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD';
  END IF;
  IF NOT pg_has_role('$ROLE', 'pg_signal_backend', 'MEMBER') THEN
    GRANT pg_signal_backend TO $ROLE;  -- lets tests drop their databases WITH (FORCE)
  END IF;
END \$\$;
SQL
  for db in "${DATABASES[@]}"; do
    as_postgres psql -q -p "$PORT" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
      || as_postgres createdb -p "$PORT" -O "$ROLE" "$db"
  done
  "$PY" "$ROOT/scripts/wait_ready.py" postgres "$(admin_url)" --timeout 60
  log "ready: $(admin_url | sed 's/:[^:@]*@/:***@/') (databases: ${DATABASES[*]})"
}

down() {
  [[ -n ${PANUI_PG_ADMIN_URL:-} ]] && return 0
  local v; v=$(version)
  [[ -z $v ]] && { log "not installed"; return 0; }
  if pg_lsclusters -h 2>/dev/null | awk -v c="$CLUSTER" '$2==c {print $4}' | grep -qx online; then
    log "stopping cluster $v/$CLUSTER"; pg_ctlcluster "$v" "$CLUSTER" stop
  else log "not running"; fi
}

status() {
  local line; line=$(pg_lsclusters -h 2>/dev/null | awk -v c="$CLUSTER" '$2==c')
  if [[ -n $line ]]; then echo "postgres: $line"; else echo "postgres: no $CLUSTER cluster"; fi
}

case "${1:-}" in
  up) up ;; down) down ;; status) status ;; url) admin_url ;;
  *) echo "usage: $0 up|down|status|url" >&2; exit 2 ;;
esac
