#!/usr/bin/env bash
# Runs a command with the project's toolchain on PATH: `bash deploy/dev/run.sh node …`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STAGELINE_ROOT"
exec "$@"
