#!/usr/bin/env bash
# `make run`: local Kafka + the three services on SQLite (var/*.db) + the local email and SMS
# gateways (what they receive: var/mail/ and the SMS gateway's GET /v1/messages). Ctrl-C stops everything this script started (Kafka too, if it started it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
mkdir -p var/log

# Local development secrets, generated once and kept under the ignored var/ folder.
if [[ ! -f var/dev.env ]]; then
  "$PY" - > var/dev.env <<'PYEOF'
import secrets
from services.common.crypto import generate_key_spec
# One key-encryption keyring per purpose (records: intake, dedupe; notices: dedupe, dispatch).
print(f"PANUI_RECORDS_KEYS={generate_key_spec('dev-records1')}")
print(f"PANUI_NOTICES_KEYS={generate_key_spec('dev-notices1')}")
print(f"PANUI_COORDINATOR_TOKENS=coord-{secrets.token_urlsafe(24)}")
print(f"PANUI_RECEIPT_SECRET=rcpt-{secrets.token_urlsafe(24)}")
print(f"PANUI_TOKEN_SIGNING_KEY=tsk-{secrets.token_urlsafe(32)}")
PYEOF
  chmod 600 var/dev.env
fi
set -a; source var/dev.env; set +a
if [[ -z ${PANUI_RECEIPT_SECRET:-} ]]; then  # dev.env from before the gateways existed
  echo "PANUI_RECEIPT_SECRET=rcpt-$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')" >> var/dev.env
  set -a; source var/dev.env; set +a
fi
if [[ -z ${PANUI_TOKEN_SIGNING_KEY:-} ]]; then  # dev.env from before named staff tokens
  echo "PANUI_TOKEN_SIGNING_KEY=tsk-$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')" >> var/dev.env
  set -a; source var/dev.env; set +a
fi

# Stop Kafka on exit only if this script is the one that started it.
was_running=0
scripts/kafka.sh status | grep -q running && was_running=1
scripts/kafka.sh up
started_kafka=0
if [[ $was_running == 0 ]] && scripts/kafka.sh status | grep -q running; then started_kafka=1; fi

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $started_kafka == 1 ]]; then scripts/kafka.sh down; fi
}
trap cleanup INT TERM EXIT

start() {  # name, module, port, then KEY=value settings or --flags for the module
  local name=$1 module=$2 port=$3; shift 3
  local envs=() args=()
  for a in "$@"; do if [[ $a == *=* && $a != --* ]]; then envs+=("$a"); else args+=("$a"); fi; done
  env "${envs[@]}" PANUI_PORT="$port" "$PY" -m "$module" "${args[@]}" > "var/log/$name.log" 2>&1 &
  pids+=($!)
}

# Each service's database is brought to its code's schema first: the services refuse to start on
# a database that is not at their head revision.
for service in intake dedupe dispatch; do
  DATABASE_URL="sqlite:///$ROOT/var/$service.db" "$PY" -m "services.$service" migrate \
    || { echo "run.sh: migrating $service's database (var/$service.db) failed; see above" >&2; exit 1; }
done

start smtp-gateway services.gateways.smtp_server 0 --port 1025 --control-port 8026 --maildir "$ROOT/var/mail" \
  --webhook-secret "$PANUI_RECEIPT_SECRET"
start sms-gateway services.gateways.sms_server 0 --port 8025 --callback-secret "$PANUI_RECEIPT_SECRET"
start intake services.intake 8001 DATABASE_URL="sqlite:///$ROOT/var/intake.db"
start dedupe services.dedupe 8002 DATABASE_URL="sqlite:///$ROOT/var/dedupe.db"
start dispatch services.dispatch 8003 DATABASE_URL="sqlite:///$ROOT/var/dispatch.db"

for port in 8001 8002 8003; do
  for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.5
  done
done

cat <<MSG

Pānui is running (logs in var/log/, data in var/*.db):
  intake    http://127.0.0.1:8001   (API docs: /docs; coordinator console: /console/)
  dedupe    http://127.0.0.1:8002
  dispatch  http://127.0.0.1:8003
  email     SMTP 127.0.0.1:1025 (local gateway; mail in var/mail/, control API :8026)
  sms       http://127.0.0.1:8025 (local gateway; GET /v1/messages)
  kafka     ${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${PANUI_KAFKA_PORT:-9092}}
Coordinator token: in var/dev.env (PANUI_COORDINATOR_TOKENS). Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "a service exited; see var/log/" >&2
