#!/usr/bin/env bash
# Sets everything up, then runs every check and every test against real servers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STAGELINE_ROOT"
bash deploy/dev/setup.sh
bash deploy/dev/check.sh
echo "test: vitest" >&2
if [ $# -gt 0 ]; then
  exec vitest run "$@"
fi
# npm run stack:pods's test builds Stageline's images and runs the whole installation in pods: alone,
# after the rest, so that its load (buildah, mmdebstrap, its pods) never slows another test's start-up.
vitest run --exclude deploy/test/stack-pods.test.ts
echo "test: vitest (npm run stack:pods, alone)" >&2
vitest run deploy/test/stack-pods.test.ts
