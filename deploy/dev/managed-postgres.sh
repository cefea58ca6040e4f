#!/usr/bin/env bash
# A PostgreSQL server for MANAGED databases (services/deploy/README.md): a cluster of its own, never the
# machine's PostgreSQL on 5432. It listens on every interface (listen_addresses = '*') so that workloads
# reach it through host.containers.internal (their podman network's gateway, which exists only while a
# container is attached), and pg_hba lets the podman networks (10.88.0.0/16, 10.89.0.0/16) in with a
# password; the administrator (postgres) connects without one from 127.0.0.1 only.
#
#   bash deploy/dev/managed-postgres.sh start [DIR] [PORT]   initdb on first use, start unless running
#   bash deploy/dev/managed-postgres.sh stop  [DIR]
#   bash deploy/dev/managed-postgres.sh url   [DIR] [PORT]   the administrator URL (MANAGED_POSTGRES_URL)
#
# Defaults: DIR $STAGELINE_STATE/managed-postgres, PORT 5433. setup.sh starts it; stack.sh points the
# deploy service at it; tests start their own in a temporary directory on a free port.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

CMD="${1:-start}"
DIR="${2:-$STAGELINE_STATE/managed-postgres}"
PORT="${3:-${MANAGED_POSTGRES_PORT:-5433}}"
DATA="$DIR/data"
LOG="$DIR/postgres.log"

log() { printf 'managed-postgres: %s\n' "$*" >&2; }

BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  BIN="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
fi
[ -x "$BIN/initdb" ] || { log "initdb/pg_ctl not found (apt install postgresql)"; exit 1; }

# PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres system user.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() { as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

case "$CMD" in
  start)
    # Another checkout's (or an earlier run's) managed-database server already answers on the port: reuse
    # it, as setup.sh reuses PostgreSQL and NATS, rather than fail to bind a second one.
    if ! running && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      log "a server already answers on 127.0.0.1:$PORT: reusing it"
      exit 0
    fi
    mkdir -p "$DIR"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres:postgres "$DIR"
      runuser -u postgres -- test -x "$DIR" || { log "the postgres user cannot reach $DIR (a parent directory is private)"; exit 1; }
    fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
      log "initdb $DATA"
      as_owner "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C --no-instructions >/dev/null
      {
        echo "listen_addresses = '*'"
        echo "port = $PORT"
        echo "unix_socket_directories = '$DIR'"
        echo "password_encryption = 'scram-sha-256'"
      } | as_owner tee -a "$DATA/postgresql.conf" >/dev/null
      cat <<'EOF' | as_owner tee "$DATA/pg_hba.conf" >/dev/null
# Stageline's managed-database server (deploy/dev/managed-postgres.sh).
local   all  all                     trust
host    all  postgres  127.0.0.1/32  trust
host    all  all       127.0.0.1/32  scram-sha-256
# Workloads on podman networks (the default one, and the 10.89.0.0/16 pool environment networks use).
host    all  all       10.88.0.0/16  scram-sha-256
host    all  all       10.89.0.0/16  scram-sha-256
EOF
    fi
    if running; then
      log "already running ($DATA)"
    else
      log "starting on port $PORT (all interfaces)"
      as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 30 -o "-p $PORT" start >/dev/null
    fi
    ;;
  stop)
    if [ -f "$DATA/PG_VERSION" ] && running; then as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; fi
    ;;
  url)
    echo "postgres://postgres@127.0.0.1:$PORT/postgres"
    ;;
  *)
    echo "usage: $0 start|stop|url [DIR] [PORT]" >&2
    exit 2
    ;;
esac
