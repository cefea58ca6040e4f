#!/usr/bin/env bash
# Builds the example image and pushes it to the local "external" registry (127.0.0.1:5001), since
# nothing can be pulled from the internet here. Run after `registry.sh up` (setup.sh does both).
#
#   bash deploy/dev/example-images.sh            build + push unless the registry already has this recipe
#   bash deploy/dev/example-images.sh --force    build + push anyway
#
# 127.0.0.1:5001/examples/busybox:1.36 — FROM scratch, the static busybox from apt (busybox-static),
# /bin/sh and the other applets as symlinks, /www/index.html, and an entrypoint that
#   - with arguments, runs them (`podman run IMAGE sh -c '...'`);
#   - with EXAMPLE_SCRIPT set, runs it with sh -c and exits with its code (jobs; a failing service);
#   - otherwise serves /www over HTTP on $PORT (default 8080) with `busybox httpd -f`; MESSAGE, when
#     set, replaces index.html so each service of an example can answer something of its own.
# The tag is the one the examples name; the binary inside is whatever busybox-static apt installed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

EXTERNAL_REGISTRY="${EXTERNAL_REGISTRY:-127.0.0.1:5001}"
IMAGE="$EXTERNAL_REGISTRY/examples/busybox:${EXAMPLE_BUSYBOX_TAG:-1.36}"
FORCE=0
case "${1:-}" in
  --force) FORCE=1 ;;
  '') ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

log() { printf 'example-images: %s\n' "$*" >&2; }

BUSYBOX="$(command -v busybox || true)"
if [ -z "$BUSYBOX" ] || ! "$BUSYBOX" --list >/dev/null 2>&1; then
  log "busybox is not installed (apt install busybox-static)"
  exit 1
fi
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  log "$BUSYBOX is not static: the image has no libraries (apt install busybox-static)"
  exit 1
fi
code="$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$EXTERNAL_REGISTRY/v2/" || true)"
if [ "$code" != 200 ]; then
  log "the external registry does not answer on $EXTERNAL_REGISTRY (bash deploy/dev/registry.sh up)"
  exit 1
fi

ENTRYPOINT_SCRIPT='#!/bin/sh
# Stageline example entrypoint (deploy/dev/example-images.sh).
if [ "$#" -gt 0 ]; then exec "$@"; fi
if [ -n "${EXAMPLE_SCRIPT:-}" ]; then exec /bin/sh -c "$EXAMPLE_SCRIPT"; fi
if [ -n "${MESSAGE:-}" ]; then printf "%s\n" "$MESSAGE" >/www/index.html; fi
echo "example: serving /www on port ${PORT:-8080}"
exec /bin/busybox httpd -f -v -p "${PORT:-8080}" -h /www
'
INDEX_HTML='<!doctype html>
<title>Stageline example</title>
<p>Hello from a Stageline example service (busybox httpd).</p>
'

# The recipe (this script and the busybox binary) as a label: an image pushed from an older recipe is rebuilt.
RECIPE="$( { sha256sum "${BASH_SOURCE[0]}" "$BUSYBOX" | cut -d' ' -f1; } | sha256sum | cut -c1-16)"
if [ "$FORCE" = 0 ]; then
  # skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF: name the file.
  pushed="$(skopeo inspect --registries-conf "$CONTAINERS_REGISTRIES_CONF" --config "docker://$IMAGE" 2>/dev/null || true)"
  if grep -q "\"stageline.example.recipe\": *\"$RECIPE\"" <<<"$pushed"; then
    log "$IMAGE already in the registry (recipe $RECIPE)"
    exit 0
  fi
fi

started=$(date +%s%N)
STAGE="$(mktemp -d)"
container=""
cleanup() {
  if [ -n "$container" ]; then buildah rm "$container" >/dev/null 2>&1 || true; fi
  rm -rf "$STAGE"
}
trap cleanup EXIT

ROOTFS="$STAGE/rootfs"
mkdir -p "$ROOTFS/bin" "$ROOTFS/www" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
# Every applet as a symlink, so jobs can call sleep, mkdir, wget … by name.
while read -r applet; do
  [ -n "$applet" ] && [ "$applet" != busybox ] && ln -s busybox "$ROOTFS/bin/$applet"
done < <("$BUSYBOX" --list)
printf '%s' "$ENTRYPOINT_SCRIPT" >"$ROOTFS/bin/stageline-example"
chmod 0755 "$ROOTFS/bin/stageline-example"
printf '%s' "$INDEX_HTML" >"$ROOTFS/www/index.html"

# No RUN step: chroot isolation and argv only, nothing executes inside the image while building.
container="$(buildah from --quiet --isolation chroot scratch)"
buildah copy --quiet "$container" "$ROOTFS/" / >/dev/null
buildah config \
  --env PATH=/bin \
  --env PORT=8080 \
  --entrypoint '["/bin/stageline-example"]' \
  --cmd '[]' \
  --port 8080 \
  --workingdir / \
  --label "stageline.example.recipe=$RECIPE" \
  --label "org.opencontainers.image.title=stageline-example-busybox" \
  "$container"
buildah commit --quiet --rm "$container" "$IMAGE" >/dev/null
container=""
# registries.conf (CONTAINERS_REGISTRIES_CONF) marks the local registries insecure: plain HTTP.
buildah push --quiet "$IMAGE" "docker://$IMAGE"
# The registry is the source of truth: a local copy would only let podman skip the pull and hide mistakes.
buildah rmi "$IMAGE" >/dev/null 2>&1 || true

log "pushed $IMAGE (recipe $RECIPE) in $(( ($(date +%s%N) - started) / 1000000 )) ms"
