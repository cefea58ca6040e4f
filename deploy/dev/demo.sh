#!/usr/bin/env bash
# The main job: set up, bring up the stack, apply the example environment and print its pipeline.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STAGELINE_ROOT"
bash deploy/dev/setup.sh
bash deploy/dev/stack.sh up
node deploy/dev/apply-example.ts deploy/examples/demo-staging.json
node deploy/dev/demo-run.ts demo staging
echo "stack is still running: 'npm run stack:down' stops it."
