#!/usr/bin/env bash
# Sets up everything Stageline needs on a Debian machine, as root: Node 24 + pnpm (project-local),
# system packages, PostgreSQL and NATS (reused when they already answer), and the dependencies; then
# proves the container tools work (the self-check, last section) before anything else runs.
# Safe to run again: each step checks before it acts.
#
#   bash deploy/dev/setup.sh                set up, then self-check
#   bash deploy/dev/setup.sh --no-install   the same, but install nothing with apt: shows what a
#                                           machine lacks (the self-check names it) without fixing it
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STAGELINE_ROOT"

INSTALL=1
case "${1:-}" in
  --no-install) INSTALL=0 ;;
  '') ;;
  *) echo "usage: $0 [--no-install]" >&2; exit 2 ;;
esac

log() { printf 'setup: %s\n' "$*" >&2; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# --- system packages ----------------------------------------------------------------------------
# Every program Stageline, its set-up, its tests and the container tools under them exec, in one table:
#   check (a command on PATH, an absolute path, or python3:<module>) | Debian package | why
# apt runs with --no-install-recommends, so what podman, buildah and netavark only *recommend* or
# *suggest* is named here explicitly. Left out on purpose (all for rootless podman, or unused):
# slirp4netns, fuse-overlayfs, uidmap, dbus-user-session (rootless), crun (runc is configured),
# tini / dumb-init (catatonit covers --init), criu (checkpoints), containernetworking-plugins (CNI).
# The README's set-up section mirrors this table.
REQUIREMENTS=(
  "git                                 | git               | build clones applications; deploy clones custom charts; set-up makes the example repositories"
  "ssh                                 | openssh-client    | git over ssh:// for applications and custom charts"
  "podman                              | podman            | the deploy worker's local runtime (kube play), the tests' containers"
  "runc                                | runc              | the OCI runtime containers.conf names (crun fails RUN steps on cgroup v1 hybrid)"
  "/usr/lib/podman/netavark            | netavark          | the network backend containers.conf names (podman only recommends it)"
  "/usr/lib/podman/aardvark-dns        | aardvark-dns      | DNS between the services of an environment (netavark only recommends it)"
  "iptables                            | iptables          | netavark's firewall driver execs it for every container and buildah RUN (only a suggest of podman)"
  "ip6tables                           | iptables          | netavark sets up IPv6 rules too"
  "catatonit                           | catatonit         | podman builds its pod pause image from it, for every kube play (a recommend of podman)"
  "buildah                             | buildah           | the build service builds Dockerfiles; set-up builds the example image"
  "skopeo                              | skopeo            | set-up asks the registry whether the example image is current"
  "busybox                             | busybox-static    | the example image's only binary (nothing can be pulled here)"
  "docker-registry                     | docker-registry   | the mirror (127.0.0.1:5000) and the stand-in external registry (127.0.0.1:5001)"
  "nats-server                         | nats-server       | Stageline's own authenticated bus (127.0.0.1:4223) that stack.sh starts; the tests' servers"
  "curl                                | curl              | set-up, the self-check and the demo ask registries and services over HTTP"
  "openssl                             | openssl           | set-up makes the local CA, the services' certificates and the first admin token"
  "flock                               | util-linux        | set-up and test runs make credentials one at a time"
  "initdb                              | postgresql        | the PostgreSQL cluster MANAGED databases are created on (port 5433)"
  "protoc                              | protobuf-compiler | the Python client e2e test compiles the protos"
  "/usr/include/google/protobuf/timestamp.proto | libprotobuf-dev | protoc's well-known types (only a recommend of protoc)"
  "python3:grpc                        | python3-grpcio    | the Python client e2e test"
  "python3:google.protobuf             | python3-protobuf  | the Python client e2e test"
  "podman-compose                      | podman-compose    | the compose benchmark's reference point"
  "/usr/bin/chromium                   | chromium          | the web console's browser tests (playwright-core drives it; no browser is downloaded)"
  "unshare                             | util-linux        | the browser tests run Chromium in a network namespace of its own (test/e2e/browser/)"
  "ip                                  | iproute2          | brings up loopback in the browser tests' network namespace; the multi-host scenario's hosts (namespaces, veth pairs, a bridge)"
  "nsenter                             | util-linux        | the multi-host scenario's podman deploy host enters its network namespace only (ip netns exec remounts /sys, hiding the cgroups podman needs)"
  "kubectl                             | kubectl           | renders the Kubernetes manifests (kubectl kustomize) for npm run stack:pods and their test; the deploy image's kubectl. Comes with these machines' image (v1.32): Debian's kubernetes-client conflicts with it"
  "mmdebstrap                          | mmdebstrap        | npm run images makes Stageline's Debian base images from Debian's packages (nothing can be pulled)"
)

trim() { local s="$1"; s="${s#"${s%%[![:space:]]*}"}"; printf '%s' "${s%"${s##*[![:space:]]}"}"; }
# True when the requirement's check passes.
present() {
  local check="$1"
  case "$check" in
    python3:*) /usr/bin/python3 -c "import ${check#python3:}" >/dev/null 2>&1 ;;
    initdb) compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 ;;
    /*) [ -e "$check" ] ;;
    *) command -v "$check" >/dev/null 2>&1 ;;
  esac
}
# Prints "check|package|why" for every requirement not met.
missing_requirements() {
  local row check pkg why
  for row in "${REQUIREMENTS[@]}"; do
    IFS='|' read -r check pkg why <<<"$row"
    check="$(trim "$check")"; pkg="$(trim "$pkg")"; why="$(trim "$why")"
    present "$check" || printf '%s|%s|%s\n' "$check" "$pkg" "$why"
  done
}

install_requirements() {
  local need=() check pkg why
  while IFS='|' read -r check pkg why; do
    [ -n "$pkg" ] && need+=("$pkg")
  done < <(missing_requirements)
  answers 5432 || { command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql); }
  [ ${#need[@]} -gt 0 ] || return 0
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  if [ "$INSTALL" = 0 ]; then
    log "not installing (--no-install): ${need[*]}"
    return 0
  fi
  log "installing ${need[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq >&2
  as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
}
install_requirements

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
# The anonymous NATS on 4222 is for the tests only (the test kit's first choice); the stack runs its
# own authenticated server on 4223 (stack.sh, configured below).
if ! answers 5432; then
  log "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  for _ in $(seq 1 50); do answers 5432 && break; sleep 0.2; done
fi
if ! answers 4222; then
  log "starting NATS with JetStream"
  mkdir -p "$STAGELINE_STATE/nats-tests"
  start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd "$STAGELINE_STATE/nats-tests" -l "$STAGELINE_STATE/nats-tests.log"
  for _ in $(seq 1 50); do answers 4222 && break; sleep 0.2; done
fi
answers 5432 || { log "PostgreSQL does not answer on 127.0.0.1:5432"; exit 1; }
answers 4222 || { log "NATS does not answer on 127.0.0.1:4222"; exit 1; }
# The server MANAGED databases are created on: a cluster of its own on 5433 that podman workloads reach.
bash "$STAGELINE_ROOT/deploy/dev/managed-postgres.sh" start

# --- dependencies ----------------------------------------------------------------------------
pnpm install --frozen-lockfile --reporter=silent

# The web console's browser app (packages/console/dist), which control serves.
node "$STAGELINE_ROOT/packages/console/src/build.ts"

# --- local registries (mirror :5000, external :5001) and the example images ----------------------
bash "$STAGELINE_ROOT/deploy/dev/registry.sh" up >&2
bash "$STAGELINE_ROOT/deploy/dev/example-images.sh" >&2
bash "$STAGELINE_ROOT/deploy/dev/example-repos.sh" >&2
# TLS for every gRPC server, mutual TLS between services, and the first admin token (the CLI's default).
bash "$STAGELINE_ROOT/deploy/dev/credentials.sh" "$STAGELINE_STATE"
# The bus's users (one per identity, $STAGELINE_STATE/nats/users/<identity>.json, 0600) and the
# configuration of Stageline's own nats-server; stack.sh starts it and provisions the streams.
node "$STAGELINE_ROOT/deploy/dev/nats.ts" config >/dev/null

# Provisioning: Stageline's NATS started (it stays up, like PostgreSQL and the registries) and its
# streams, consumers and buckets created as the provision identity; stack.sh up does it again.
bash "$STAGELINE_ROOT/deploy/dev/stack.sh" provision >&2

# --- self-check ------------------------------------------------------------------------------------
# What a deploy and a build do first, done once here, so that a missing program fails set-up with
# its name rather than a user's first run three layers down: a pod from the example image on a
# network of its own answers on a published port and by name (kube play, netavark, iptables,
# aardvark-dns, catatonit, runc), and a buildah RUN step succeeds (the build service's flags).
SELF_CHECK_IMAGE="127.0.0.1:5001/examples/busybox:${EXAMPLE_BUSYBOX_TAG:-1.36}"
SELF_CHECK_NAME="stageline-selfcheck-$$"
SELF_CHECK_PULLED=0
self_check_cleanup() {
  podman kube down "$STAGELINE_STATE/selfcheck/pod.yaml" >/dev/null 2>&1 || true
  podman pod rm -f "$SELF_CHECK_NAME" >/dev/null 2>&1 || true
  podman network rm -f "$SELF_CHECK_NAME" >/dev/null 2>&1 || true
  buildah rmi "localhost/$SELF_CHECK_NAME:latest" >/dev/null 2>&1 || true
  # The registry stays the only copy (as example-images.sh leaves it): a local one would hide pulls.
  [ "$SELF_CHECK_PULLED" = 0 ] || podman rmi "$SELF_CHECK_IMAGE" >/dev/null 2>&1 || true
  rm -rf "$STAGELINE_STATE/selfcheck"
}

# Stops set-up: what failed, podman's own words, and which required program is missing.
self_check_failed() {
  local what="$1" output="$2" check pkg why named=0
  log "self-check failed: $what"
  { grep -v '^[[:space:]]*$' <<<"$output" || true; } | tail -n 5 | sed 's/^/  | /' >&2
  local seen=" "
  while IFS='|' read -r check pkg why; do
    [ -n "$check" ] || continue
    named=1
    [[ "$seen" == *" $pkg "* ]] && continue
    seen+="$pkg "
    case "$check" in
      iptables | ip6tables) log "netavark cannot start containers: \`$check\` is not installed (apt-get install $pkg)" ;;
      *) log "\`$check\` is not installed (apt-get install $pkg): $why" ;;
    esac
  done < <(missing_requirements)
  [ "$named" = 1 ] || log "every required program is installed; podman's message above is the cause"
  self_check_cleanup
  exit 1
}

free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 10000))
    answers "$port" || { echo "$port"; return 0; }
  done
  return 1
}

self_check() {
  local dir="$STAGELINE_STATE/selfcheck" port out
  self_check_cleanup
  podman image exists "$SELF_CHECK_IMAGE" || SELF_CHECK_PULLED=1
  mkdir -p "$dir"
  port="$(free_port)"
  cat >"$dir/pod.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $SELF_CHECK_NAME
spec:
  containers:
    - name: web
      image: $SELF_CHECK_IMAGE
      env:
        - { name: MESSAGE, value: stageline-selfcheck }
      ports:
        - { containerPort: 8080, hostPort: $port, hostIP: 127.0.0.1 }
YAML
  out="$(podman network create "$SELF_CHECK_NAME" 2>&1)" || self_check_failed "podman cannot create a network" "$out"
  out="$(podman kube play --start=true --network "$SELF_CHECK_NAME:alias=selfcheck-web" "$dir/pod.yaml" 2>&1)" ||
    self_check_failed "a pod with networking does not start (podman kube play)" "$out"
  for _ in $(seq 1 50); do
    out="$(curl -fsS --max-time 2 "http://127.0.0.1:$port/" 2>&1)" && break
    sleep 0.1
  done
  grep -q stageline-selfcheck <<<"$out" ||
    self_check_failed "the pod does not answer on its published port 127.0.0.1:$port" "$out"
  # busybox wget's -T segfaults (1.35): the image's own timeout applet bounds it instead. Three tries:
  # aardvark-dns is one process for every network, reloaded whenever another network comes or goes
  # (other checkouts' tests), and can miss a query meanwhile; a missing or broken DNS fails all three.
  for try in 1 2 3; do
    out="$(podman run --rm --network "$SELF_CHECK_NAME" "$SELF_CHECK_IMAGE" timeout 10 wget -q -O - http://selfcheck-web:8080/ 2>&1)" &&
      grep -q stageline-selfcheck <<<"$out" && break
    [ "$try" -lt 3 ] || self_check_failed "a container does not reach another by name on their network (aardvark-dns)" "$out"
    sleep 1
  done

  printf 'FROM %s\nRUN echo built > /selfcheck\n' "$SELF_CHECK_IMAGE" >"$dir/Dockerfile"
  out="$(buildah bud --quiet --layers=false --isolation oci --runtime runc --cgroup-manager cgroupfs \
    --file "$dir/Dockerfile" --tag "localhost/$SELF_CHECK_NAME:latest" "$dir" 2>&1)" ||
    self_check_failed "a buildah RUN step fails" "$out"

  local check pkg why missing=()
  while IFS='|' read -r check pkg why; do
    [ -n "$check" ] && missing+=("$check ($pkg): $why")
  done < <(missing_requirements)
  if [ ${#missing[@]} -gt 0 ]; then
    log "self-check: containers work, but these are missing:"
    printf '  - %s\n' "${missing[@]}" >&2
    self_check_cleanup
    exit 1
  fi
  self_check_cleanup
  log "self-check passed: a pod answers on 127.0.0.1:$port and by name, a buildah RUN step succeeds"
}
self_check
log "ready: node $(node --version), pnpm $(pnpm --version)"
