#!/usr/bin/env bash
# Local Apache Kafka (single KRaft broker+controller) from Maven Central jars, run with the machine's Java.
#   scripts/kafka.sh up|down|status
#   scripts/kafka.sh tools   fetch Kafka's perf tools (kafka-tools + argparse4j) once; print their classpath folder
# Settings (environment): PANUI_VAR (var/), PANUI_KAFKA_PORT (9092), PANUI_KAFKA_CONTROLLER_PORT (9093),
# PANUI_KAFKA_HEAP (512m), PANUI_KAFKA_DIR (var/kafka: the broker's data, logs, properties and pid
# file, per port; the jars stay in var/kafka). A second broker for tests that stop or kill one
# (testkit/private_infra.py) sets its own port, controller port and PANUI_KAFKA_DIR.
# When KAFKA_BOOTSTRAP_SERVERS is set (to another address), nothing is started: that cluster is used.
# A SASL_SSL broker (testkit/private_infra.py, PrivateKafka(sasl_ssl=True)): PANUI_KAFKA_TLS_DIR holds
# broker.keystore.pem (PKCS#8 key + certificate) and ca.pem; its client listener is then SASL_SSL
# only (SCRAM-SHA-512 and -256, no PLAINTEXT), and PANUI_KAFKA_SCRAM_USERS="name:password[,...]"
# are created when the storage is formatted (the first is the broker's own inter-broker login).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=${PANUI_VAR:-$ROOT/var}
PORT=${PANUI_KAFKA_PORT:-9092}
CONTROLLER_PORT=${PANUI_KAFKA_CONTROLLER_PORT:-9093}
HEAP=${PANUI_KAFKA_HEAP:-512m}
POM=$ROOT/deploy/local/kafka/pom.xml
VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")
LIB=$VAR/kafka/lib-$VERSION
HOME_DIR=${PANUI_KAFKA_DIR:-$VAR/kafka}
DATA=$HOME_DIR/data-$PORT
PIDFILE=$HOME_DIR/kafka-$PORT.pid
PROPS=$HOME_DIR/server-$PORT.properties
PY=${PANUI_PYTHON:-$ROOT/.venv/bin/python}
TLS_DIR=${PANUI_KAFKA_TLS_DIR:-}
SCRAM_USERS=${PANUI_KAFKA_SCRAM_USERS:-}

log() { printf 'kafka: %s\n' "$*" >&2; }

running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

fetch() {
  [[ -f $LIB/.complete ]] && return 0
  command -v java >/dev/null || { log "java not found (Java 17 is needed)"; exit 1; }
  command -v mvn >/dev/null || { log "mvn not found (Maven fetches Kafka's jars)"; exit 1; }
  log "fetching Apache Kafka $VERSION jars from Maven Central into $LIB"
  rm -rf "$LIB"; mkdir -p "$LIB"
  mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIB"
  touch "$LIB/.complete"
}

tools() {  # the same version as the broker, cached beside its jars
  local dir=$HOME_DIR/tools-$VERSION
  if [[ ! -f $dir/.complete ]]; then
    command -v mvn >/dev/null || { log "mvn not found (Maven fetches Kafka's jars)"; exit 1; }
    log "fetching Kafka $VERSION's performance tools from Maven Central into $dir"
    rm -rf "$dir"; mkdir -p "$dir"
    mvn -q -B -f "$ROOT/deploy/local/kafka/tools-pom.xml" dependency:copy-dependencies \
      -Dkafka.version="$VERSION" -DincludeScope=runtime -DoutputDirectory="$dir" >&2
    touch "$dir/.complete"
  fi
  echo "$dir"
}

first_user() { local first=${SCRAM_USERS%%,*}; if [[ $1 == name ]]; then echo "${first%%:*}"; else echo "${first#*:}"; fi; }

secure_properties() {  # the SASL_SSL listener replaces the PLAINTEXT one
  [[ -f $TLS_DIR/broker.keystore.pem && -f $TLS_DIR/ca.pem ]] || { log "PANUI_KAFKA_TLS_DIR needs broker.keystore.pem and ca.pem"; exit 1; }
  [[ -n $SCRAM_USERS ]] || { log "a SASL_SSL broker needs PANUI_KAFKA_SCRAM_USERS"; exit 1; }
  sed -i -e '/^listeners=/d' -e '/^advertised.listeners=/d' -e '/^inter.broker.listener.name=/d' \
    -e '/^listener.security.protocol.map=/d' "$PROPS"
  cat >> "$PROPS" <<EOF
listeners=SASL_SSL://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$PORT
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$(first_user name)" password="$(first_user password)";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$(first_user name)" password="$(first_user password)";
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/broker.keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
ssl.endpoint.identification.algorithm=https
EOF
}

scram_args() {  # --add-scram for each user, both mechanisms; one argument per line
  local entry mechanism entries
  IFS=, read -ra entries <<< "$SCRAM_USERS"
  for entry in "${entries[@]}"; do
    for mechanism in SCRAM-SHA-512 SCRAM-SHA-256; do
      printf -- '--add-scram\n%s=[name=%s,password=%s]\n' "$mechanism" "${entry%%:*}" "${entry#*:}"
    done
  done
}

configure() {
  mkdir -p "$HOME_DIR" "$DATA"
  sed -e "s:@PORT@:$PORT:g" -e "s:@CONTROLLER_PORT@:$CONTROLLER_PORT:g" -e "s:@DATA_DIR@:$DATA:g" \
    "$ROOT/deploy/local/kafka/server.properties.in" > "$PROPS"
  if [[ -n $TLS_DIR ]]; then secure_properties; fi
  chmod 600 "$PROPS"
  if [[ ! -f $DATA/meta.properties ]]; then
    local cluster_id extra=()
    if [[ -n $TLS_DIR ]]; then mapfile -t extra < <(scram_args); fi
    cluster_id=$(java "-Dlog4j.configuration=file:$ROOT/deploy/local/kafka/log4j-tools.properties" -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    log "formatting storage in $DATA (cluster $cluster_id)"
    java "-Dlog4j.configuration=file:$ROOT/deploy/local/kafka/log4j-tools.properties" -cp "$LIB/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" "${extra[@]}" >/dev/null
  fi
}

wait_ready() {
  if [[ -n $TLS_DIR ]]; then  # the readiness probe logs in as the broker's own user
    export PANUI_KAFKA_SECURITY_PROTOCOL=SASL_SSL PANUI_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 \
      PANUI_KAFKA_SSL_CAFILE=$TLS_DIR/ca.pem PANUI_KAFKA_SASL_USERNAME=$(first_user name) \
      PANUI_KAFKA_SASL_PASSWORD=$(first_user password)
  fi
  "$PY" "$ROOT/scripts/wait_ready.py" kafka "127.0.0.1:$PORT" --timeout 90 || {
    log "broker did not become ready; last log lines:"; tail -n 30 "$HOME_DIR/logs-$PORT/server.log" >&2 || true
    exit 1; }
}

up() {
  if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} && ${KAFKA_BOOTSTRAP_SERVERS} != "127.0.0.1:$PORT" ]]; then
    log "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS is set: using that cluster, starting nothing"; return 0
  fi
  if running; then wait_ready; log "already running, listening on 127.0.0.1:$PORT"; return 0; fi
  if "$PY" "$ROOT/scripts/wait_ready.py" kafka "127.0.0.1:$PORT" --timeout 2 2>/dev/null; then
    log "a broker already answers on 127.0.0.1:$PORT (not started by this checkout): using it"; return 0
  fi
  fetch
  configure
  mkdir -p "$HOME_DIR/logs-$PORT"
  log "starting Apache Kafka $VERSION (KRaft) on 127.0.0.1:$PORT"
  # setsid: the broker outlives the shell that started it (make infra-up), but not `make infra-down`.
  setsid java -Xms128m "-Xmx$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    "-Dkafka.logs.dir=$HOME_DIR/logs-$PORT" \
    "-Dlog4j.configuration=file:$ROOT/deploy/local/kafka/log4j.properties" \
    -cp "$LIB/*" kafka.Kafka "$PROPS" >"$HOME_DIR/logs-$PORT/stdout.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  wait_ready
  log "ready: bootstrap servers 127.0.0.1:$PORT (logs in $HOME_DIR/logs-$PORT)"
}

down() {
  if ! running; then log "not running"; rm -f "$PIDFILE"; return 0; fi
  local pid; pid=$(cat "$PIDFILE")
  log "stopping (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && { log "still running after 30 s; killing"; kill -9 "$pid"; }
  rm -f "$PIDFILE"
}

status() {
  if running; then echo "kafka: running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"; else echo "kafka: stopped"; fi
}

case "${1:-}" in
  up) up ;; down) down ;; status) status ;; fetch) fetch ;; tools) tools ;;
  *) echo "usage: $0 up|down|status|fetch|tools" >&2; exit 2 ;;
esac
