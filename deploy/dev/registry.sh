#!/usr/bin/env bash
# The two local OCI registries (the CNCF registry from apt, `docker-registry`), plain HTTP on loopback:
#
#   mirror    127.0.0.1:5000  Stageline's mirror registry (MIRROR_REGISTRY); deletes enabled
#   external  127.0.0.1:5001  stands in for an "external" registry the examples pull from
#
#   bash deploy/dev/registry.sh up       start what does not answer yet (a registry that already answers
#                                        GET /v2/ on its port is reused, whoever started it)
#   bash deploy/dev/registry.sh down     stop the registries this script started (SIGTERM, SIGKILL after 10 s)
#   bash deploy/dev/registry.sh status   whether each answers, and its pid when started here
#
# Storage: $STAGELINE_STATE/registry/<name>; configs: $STAGELINE_STATE/registry/<name>.yml;
# logs: $STAGELINE_STATE/logs/registry-<name>.log; pids: $STAGELINE_STATE/run/registry-<name>.pid.
# podman/buildah learn that these two hosts speak plain HTTP from deploy/dev/registries.conf (env.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

REGISTRIES=(mirror external)
REGISTRY_DIR="$STAGELINE_STATE/registry"
LOG_DIR="$STAGELINE_STATE/logs"
RUN_DIR="$STAGELINE_STATE/run"
STOP_TIMEOUT_S=10

port_of() {
  case "$1" in
    mirror) echo 5000 ;;
    external) echo 5001 ;;
    *) echo "unknown registry $1" >&2; return 1 ;;
  esac
}

binary() {
  local bin
  bin="$(command -v docker-registry || true)"
  [ -n "$bin" ] || bin=/usr/bin/docker-registry
  if [ ! -x "$bin" ]; then
    echo "registry: docker-registry is not installed (apt install docker-registry; setup.sh does it)" >&2
    return 1
  fi
  echo "$bin"
}

# A registry answers GET /v2/ with 200 (or 401 when it wants credentials).
answers() {
  local code
  code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/v2/" 2>/dev/null || true)"
  [ "$code" = 200 ] || [ "$code" = 401 ]
}

config_file() { echo "$REGISTRY_DIR/$1.yml"; }
pid_file() { echo "$RUN_DIR/registry-$1.pid"; }

# The pid of a registry started here, from its pid file; the command line must still name its config,
# so a pid reused by an unrelated process after a crash is never taken for (or signalled as) it.
running_pid() {
  local file pid
  file="$(pid_file "$1")"
  [ -f "$file" ] || return 1
  pid="$(cat "$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$(config_file "$1")" || return 1
  echo "$pid"
}

write_config() {
  local name="$1" port
  port="$(port_of "$name")"
  mkdir -p "$REGISTRY_DIR/$name"
  # Rewritten on every start, so a changed port or path takes effect; `delete` lets operators
  # garbage-collect the mirror (and costs nothing on the external one).
  cat >"$(config_file "$name")" <<EOF
version: 0.1
log:
  level: info
  fields:
    service: registry-$name
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/$name
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
  headers:
    X-Content-Type-Options: [nosniff]
EOF
}

up() {
  local bin name port pid log
  bin="$(binary)"
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$REGISTRY_DIR"
  for name in "${REGISTRIES[@]}"; do
    port="$(port_of "$name")"
    if answers "$port"; then
      echo "registry: $name already answers on 127.0.0.1:$port"
      continue
    fi
    if pid="$(running_pid "$name")"; then
      echo "registry: $name (pid $pid) is running but does not answer on 127.0.0.1:$port; see $LOG_DIR/registry-$name.log" >&2
      exit 1
    fi
    write_config "$name"
    log="$LOG_DIR/registry-$name.log"
    printf '=== registry.sh: starting %s at %s\n' "$name" "$(date -Is)" >>"$log"
    # setsid: its own session, so closing this terminal never reaches it; $! is the registry's own pid.
    setsid nohup "$bin" serve "$(config_file "$name")" >>"$log" 2>&1 </dev/null &
    echo $! >"$(pid_file "$name")"
    for _ in $(seq 1 100); do
      answers "$port" && break
      if ! kill -0 "$!" 2>/dev/null; then break; fi
      sleep 0.1
    done
    if ! answers "$port"; then
      echo "registry: $name did not answer on 127.0.0.1:$port; last lines of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    echo "registry: started $name on 127.0.0.1:$port (pid $!, storage $REGISTRY_DIR/$name)"
  done
}

down() {
  local name pid
  for name in "${REGISTRIES[@]}"; do
    if ! pid="$(running_pid "$name")"; then
      rm -f "$(pid_file "$name")"
      echo "registry: $name not started here"
      continue
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((STOP_TIMEOUT_S * 10))); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$(pid_file "$name")"
    echo "registry: stopped $name (pid $pid)"
  done
}

status() {
  local name port pid state all=0
  for name in "${REGISTRIES[@]}"; do
    port="$(port_of "$name")"
    if answers "$port"; then state=answering; else state=down; all=1; fi
    if pid="$(running_pid "$name")"; then pid="pid $pid"; else pid="not started here"; fi
    printf '%-9s 127.0.0.1:%s  %-9s (%s)\n' "$name" "$port" "$state" "$pid"
  done
  return "$all"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
