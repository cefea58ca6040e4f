#!/usr/bin/env bash
# Static checks: lint + format (Biome), types (tsc), and generated code in step with proto/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STAGELINE_ROOT"

echo "check: biome" >&2
biome ci --reporter=summary .
echo "check: tsc" >&2
tsc -p tsconfig.json
tsc -p packages/console/tsconfig.json # the browser app: DOM types, JSX
echo "check: protos (buf lint, regenerate, compare)" >&2
bash proto/generate.sh
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  if [ -n "$(git status --porcelain -- packages/proto)" ]; then
    git status --short -- packages/proto >&2
    echo "check: packages/proto is out of date with proto/: run 'npm run gen' and commit the result" >&2
    exit 1
  fi
fi
