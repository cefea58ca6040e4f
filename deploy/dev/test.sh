#!/usr/bin/env bash
# Sets everything up, then runs every check and every test against real servers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STAGELINE_ROOT"
bash deploy/dev/setup.sh
bash deploy/dev/check.sh
echo "test: vitest" >&2
vitest run "$@"
