#!/usr/bin/env bash
# Regenerates packages/proto from proto/: lint, ts-proto code, and the descriptor set
# that gRPC server reflection serves. CI runs it and fails on any diff.
set -euo pipefail
cd "$(dirname "$0")"
buf=../node_modules/.bin/buf
"$buf" lint
"$buf" generate
"$buf" build -o ../packages/proto/src/descriptor.binpb
