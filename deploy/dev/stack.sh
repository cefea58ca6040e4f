#!/usr/bin/env bash
# Runs the four Stageline services on this machine, in the background.
#
#   bash deploy/dev/stack.sh up         start what is not running (Stageline's NATS first, then
#                                       provisioning), wait until all are SERVING
#   bash deploy/dev/stack.sh down       SIGTERM (SIGKILL after 10 s), remove pid files; NATS last
#   bash deploy/dev/stack.sh status     pid and gRPC health of each
#   bash deploy/dev/stack.sh provision  streams, consumers and buckets, as the provision identity
#
# The bus: Stageline's own nats-server on 127.0.0.1:4223 (STAGELINE_NATS_PORT), configured by
# deploy/dev/nats.ts (users in $STAGELINE_STATE/nats/users, one per identity; no anonymous client),
# its store in $STAGELINE_STATE/nats/store; each service gets STAGELINE_NATS_CREDENTIALS, its own
# user's file. With NATS_URL set, that server is used instead (its users must be the same files).
# Listen addresses: CONTROL_GRPC_LISTEN, PLANNER_GRPC_LISTEN, BUILD_GRPC_LISTEN, DEPLOY_GRPC_LISTEN
# (default 127.0.0.1:50051 to :50054, in that order); plaintext HTTP probe ports (/livez, /readyz):
# CONTROL_HEALTH_LISTEN, … (default: the gRPC port + 100, :50151 to :50154). DATABASE_URL, STAGELINE_BUS_PREFIX and
# LOG_LEVEL are passed through to every service; TLS files come from $STAGELINE_STATE/tls
# (STAGELINE_TLS_DIR), the first admin token from $STAGELINE_STATE/admin.token (setup.sh makes both).
# Logs: $STAGELINE_STATE/logs/<name>.log; pids: $STAGELINE_STATE/run/<name>.pid.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STAGELINE_ROOT"

SERVICES=(control planner build deploy)
LOG_DIR="$STAGELINE_STATE/logs"
RUN_DIR="$STAGELINE_STATE/run"
STOP_TIMEOUT_S=10
HEALTH_TIMEOUT_MS=30000
NATS_DIR="$STAGELINE_STATE/nats"
NATS_PORT="${STAGELINE_NATS_PORT:-4223}"
OWN_NATS=1
[ -z "${NATS_URL:-}" ] || OWN_NATS=0
export NATS_URL="${NATS_URL:-nats://127.0.0.1:$NATS_PORT}"
NATS_USERS="${STAGELINE_NATS_USERS:-$NATS_DIR/users}"

address_of() {
  case "$1" in
    control) echo "${CONTROL_GRPC_LISTEN:-127.0.0.1:50051}" ;;
    planner) echo "${PLANNER_GRPC_LISTEN:-127.0.0.1:50052}" ;;
    build) echo "${BUILD_GRPC_LISTEN:-127.0.0.1:50053}" ;;
    deploy) echo "${DEPLOY_GRPC_LISTEN:-127.0.0.1:50054}" ;;
    *) echo "unknown service $1" >&2; return 1 ;;
  esac
}

# Empty: the service's default, beside its gRPC port (port + 100).
health_of() {
  local var
  var="$(echo "$1" | tr '[:lower:]' '[:upper:]')_HEALTH_LISTEN"
  echo "${!var:-}"
}

entry_of() { echo "services/$1/src/main.ts"; }
pid_file() { echo "$RUN_DIR/$1.pid"; }

# The pid of a running service, from its pid file; the command line is checked so that a pid
# reused by an unrelated process after a crash is never taken for (or signalled as) the service.
running_pid() {
  local file pid
  file="$(pid_file "$1")"
  [ -f "$file" ] || return 1
  pid="$(cat "$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$(entry_of "$1")" || return 1
  echo "$pid"
}

# Stageline's own nats-server: the pid file holds its pid; its command line names our config.
nats_pid() {
  local file="$RUN_DIR/nats.pid" pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$NATS_DIR/nats.conf" || return 1
  echo "$pid"
}

nats_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; }

nats_up() {
  local changed pid binary
  # Users (kept) and the configuration (remade for this prefix and port); idempotent.
  changed="$(node deploy/dev/nats.ts config)"
  [ "$OWN_NATS" = 1 ] || return 0
  if pid="$(nats_pid)"; then
    if [ "$changed" = changed ]; then
      kill -HUP "$pid" # reload: users and permissions follow the new configuration
      echo "stack: nats reloaded its configuration (pid $pid)"
    else
      echo "stack: nats already running (pid $pid)"
    fi
    return 0
  fi
  binary="$(command -v nats-server || echo /usr/sbin/nats-server)"
  [ -x "$binary" ] || { echo "stack: nats-server is not installed (bash deploy/dev/setup.sh installs it)" >&2; exit 1; }
  if nats_answers; then
    echo "stack: 127.0.0.1:$NATS_PORT is taken by another process: set STAGELINE_NATS_PORT" >&2
    exit 1
  fi
  mkdir -p "$NATS_DIR/store"
  setsid nohup "$binary" -c "$NATS_DIR/nats.conf" >>"$NATS_DIR/nats-server.out" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/nats.pid"
  for _ in $(seq 1 100); do nats_answers && break; sleep 0.1; done
  nats_answers || { echo "stack: nats-server did not start: $NATS_DIR/nats-server.log" >&2; tail -n 20 "$NATS_DIR/nats-server.log" >&2 || true; exit 1; }
  echo "stack: started nats (pid $!) on 127.0.0.1:$NATS_PORT"
}

provision() {
  node deploy/dev/nats.ts provision | sed 's/^/stack: /'
}

nats_down() {
  local pid waited=0
  pid="$(nats_pid)" || { rm -f "$RUN_DIR/nats.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  echo "stack: stopping nats (pid $pid)"
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((STOP_TIMEOUT_S * 10)) ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN_DIR/nats.pid"
}

targets() {
  local name
  for name in "${SERVICES[@]}"; do printf '%s=%s ' "$name" "$(address_of "$name")"; done
}

up() {
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  local name pid log
  nats_up
  provision
  for name in "${SERVICES[@]}"; do
    if pid="$(running_pid "$name")"; then
      echo "stack: $name already running (pid $pid)"
      continue
    fi
    if [ ! -f "$(entry_of "$name")" ]; then
      echo "stack: $(entry_of "$name") does not exist" >&2
      exit 1
    fi
    log="$LOG_DIR/$name.log"
    printf '=== stack.sh: starting %s at %s\n' "$name" "$(date -Is)" >>"$log"
    # setsid: its own session, so a Ctrl-C in this terminal or its closing never reaches it.
    # Not a job-control shell, so setsid execs in place and $! is node's own pid.
    GRPC_LISTEN="$(address_of "$name")" HEALTH_LISTEN="$(health_of "$name")" STAGELINE_NATS_CREDENTIALS="$NATS_USERS/$name.json" \
      STAGELINE_TLS_DIR="${STAGELINE_TLS_DIR:-$STAGELINE_STATE/tls}" \
      STAGELINE_ADMIN_TOKEN_FILE="${STAGELINE_ADMIN_TOKEN_FILE:-$STAGELINE_STATE/admin.token}" setsid nohup node "$(entry_of "$name")" >>"$log" 2>&1 </dev/null &
    echo $! >"$(pid_file "$name")"
    echo "stack: started $name (pid $!)"
  done

  # shellcheck disable=SC2046
  if ! node deploy/dev/wait-healthy.ts --timeout-ms="$HEALTH_TIMEOUT_MS" $(targets); then
    echo "stack: not every service became healthy (bash deploy/dev/stack.sh down stops the rest)" >&2
    exit 1
  fi

  echo
  echo "Stageline is up:"
  for name in "${SERVICES[@]}"; do
    printf '  %-8s grpc %-21s log %s\n' "$name" "$(address_of "$name")" "$LOG_DIR/$name.log"
  done
  printf '  %-8s %-26s users %s\n' bus "$NATS_URL" "$NATS_USERS"
}

down() {
  local name pid
  local -a stopping=()
  for name in "${SERVICES[@]}"; do
    if pid="$(running_pid "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
      stopping+=("$name:$pid")
      echo "stack: stopping $name (pid $pid)"
    else
      echo "stack: $name not running"
      rm -f "$(pid_file "$name")"
    fi
  done

  local entry waited
  for entry in "${stopping[@]}"; do
    name="${entry%%:*}"
    pid="${entry#*:}"
    waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((STOP_TIMEOUT_S * 10)) ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "stack: $name (pid $pid) still running after ${STOP_TIMEOUT_S}s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$name")"
  done
  nats_down
}

status() {
  mkdir -p "$RUN_DIR"
  local pid
  if [ "$OWN_NATS" = 0 ]; then
    echo "bus      $NATS_URL (external)"
  elif pid="$(nats_pid)"; then
    echo "bus      pid $pid  $NATS_URL"
  else
    echo "bus      not running"
  fi
  # shellcheck disable=SC2046
  node deploy/dev/wait-healthy.ts --status $(targets)
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  provision) mkdir -p "$RUN_DIR"; nats_up; provision ;;
  *)
    echo "usage: bash deploy/dev/stack.sh up|down|status|provision" >&2
    exit 2
    ;;
esac
