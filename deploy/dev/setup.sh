#!/usr/bin/env bash
# Sets up everything Stageline needs on a Debian machine, as root: Node 24 + pnpm (project-local),
# system packages, PostgreSQL and NATS (reused when they already answer), and the dependencies.
# Safe to run again: each step checks before it acts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STAGELINE_ROOT"

log() { printf 'setup: %s\n' "$*" >&2; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- system packages -------------------------------------------------------------------------
# catatonit: podman builds its pod infra (pause) image from it; apt only recommends it, and
# recommends are not installed here.
need=()
for pair in git:git podman:podman buildah:buildah skopeo:skopeo runc:runc \
            busybox:busybox-static docker-registry:docker-registry protoc:protobuf-compiler \
            podman-compose:podman-compose catatonit:catatonit; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
# Container networking with DNS between the services of an environment (deploy/dev/containers.conf
# names netavark): podman only recommends it, and its binaries are not on PATH.
for pkg in netavark aardvark-dns; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
# The Python client e2e test (test/e2e/python) runs Debian's python3 with its grpcio and protobuf;
# protoc's well-known types (timestamp.proto) come with libprotobuf-dev, only a recommend of protoc.
/usr/bin/python3 -c 'import grpc, google.protobuf' >/dev/null 2>&1 || need+=(python3-grpcio python3-protobuf)
[ -f /usr/include/google/protobuf/timestamp.proto ] || need+=(libprotobuf-dev)
answers 5432 || { command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql); }
answers 4222 || { command -v nats-server >/dev/null 2>&1 || need+=(nats-server); }
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq >&2
  as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# --- the stack's gRPC ports ---------------------------------------------------------------------
# 50051-50054 lie in the kernel's ephemeral range: an outgoing connection (to PostgreSQL, say) can
# take one as its source port, and the service that listens there then fails with EADDRINUSE.
# Reserve them; best effort, a sandbox may refuse the sysctl.
reserved="$(cat /proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null || true)"
if ! grep -q '50051-50054' <<<"$reserved"; then
  as_root sysctl -q -w "net.ipv4.ip_local_reserved_ports=${reserved:+$reserved,}50051-50054" >/dev/null 2>&1 ||
    log "could not reserve ports 50051-50054 (sysctl refused); a service may rarely find its port taken"
fi

# --- PostgreSQL and NATS: reuse what answers, else start our own --------------------------------
if ! answers 5432; then
  log "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  for _ in $(seq 1 50); do answers 5432 && break; sleep 0.2; done
fi
if ! answers 4222; then
  log "starting NATS with JetStream"
  mkdir -p "$STAGELINE_STATE/nats"
  start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd "$STAGELINE_STATE/nats" -l "$STAGELINE_STATE/nats.log"
  for _ in $(seq 1 50); do answers 4222 && break; sleep 0.2; done
fi
answers 5432 || { log "PostgreSQL does not answer on 127.0.0.1:5432"; exit 1; }
answers 4222 || { log "NATS does not answer on 127.0.0.1:4222"; exit 1; }
# The server MANAGED databases are created on: a cluster of its own on 5433 that podman workloads reach.
bash "$STAGELINE_ROOT/deploy/dev/managed-postgres.sh" start

# --- dependencies ----------------------------------------------------------------------------
pnpm install --frozen-lockfile --reporter=silent

# --- local registries (mirror :5000, external :5001) and the example images ----------------------
bash "$STAGELINE_ROOT/deploy/dev/registry.sh" up >&2
bash "$STAGELINE_ROOT/deploy/dev/example-images.sh" >&2
bash "$STAGELINE_ROOT/deploy/dev/example-repos.sh" >&2
log "ready: node $(node --version), pnpm $(pnpm --version)"
