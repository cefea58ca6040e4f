#!/usr/bin/env bash
# Stageline in pods on this machine, from its images and its Kubernetes manifests (`npm run stack:pods`):
# the images (npm run images: reused when their inputs did not change), Stageline's NATS and its
# provisioning (as stack.sh), the pods (deploy/pods/stack-pods.ts up), then the example environment
# applied and deployed through them with the CLI image, and its public service asked.
#
#   bash deploy/pods/stack-pods.sh [up]     all of the above; the pods stay up
#   bash deploy/pods/stack-pods.sh down     remove the pods (Stageline's NATS stays, as with stack.sh down)
#
# The pods bind 127.0.0.1:31051-31054 and 31151-31154 and share the bus with `npm run stack:up`: run one
# of the two at a time (wrap in `flock /tmp/stageline-fixed-ports.lock` on a shared machine).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../dev/env.sh"
cd "$STAGELINE_ROOT"

case "${1:-up}" in
  up)
    bash deploy/images/images.sh
    bash deploy/dev/stack.sh provision
    node deploy/pods/stack-pods.ts up
    node deploy/pods/stack-pods.ts example
    echo "Stageline is still running in pods: 'npm run stack:pods -- down' removes them."
    ;;
  down) node deploy/pods/stack-pods.ts down ;;
  *)
    echo "usage: bash deploy/pods/stack-pods.sh [up|down]" >&2
    exit 2
    ;;
esac
