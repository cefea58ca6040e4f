#!/usr/bin/env bash
# Makes the example applications' git repositories: each directory of deploy/examples/apps/ becomes the
# `main` branch of a bare repository <repos>/<name>.git, which the example environment builds from
# (deploy/examples/demo-staging.json: "gitUrl": "file:///var/lib/stageline/repos/api.git").
#
#   bash deploy/dev/example-repos.sh       create the repositories, or add a commit where the files changed
#
# <repos> is /var/lib/stageline/repos (STAGELINE_EXAMPLE_REPOS overrides it): a fixed path, because the
# example files are fixed text that every tool (`stageline apply`, the benchmarks) reads as they are.
# Commits have a fixed author and date, so the same files always make the same commit: a second run
# changes nothing, and a second `npm run demo` finds the image of that commit in the mirror (cache hit).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

REPOS="${STAGELINE_EXAMPLE_REPOS:-/var/lib/stageline/repos}"
APPS="$STAGELINE_ROOT/deploy/examples/apps"

log() { printf 'example-repos: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! mkdir -p "$REPOS" 2>/dev/null || [ ! -w "$REPOS" ]; then
  as_root mkdir -p "$REPOS"
  as_root chown "$(id -u):$(id -g)" "$REPOS"
fi

export GIT_AUTHOR_NAME="Stageline examples" GIT_AUTHOR_EMAIL="examples@stageline.invalid"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null

for app in "$APPS"/*/; do
  [ -d "$app" ] || continue
  name="$(basename "$app")"
  repo="$REPOS/$name.git"
  [ -d "$repo" ] || git init --quiet --bare --initial-branch=main "$repo"
  index="$(mktemp)"
  rm -f "$index"
  # The directory's tree, through a throwaway index: nothing is written next to the example files.
  GIT_DIR="$repo" GIT_WORK_TREE="$app" GIT_INDEX_FILE="$index" git add --all .
  tree="$(GIT_DIR="$repo" GIT_INDEX_FILE="$index" git write-tree)"
  rm -f "$index"
  parent="$(GIT_DIR="$repo" git rev-parse --verify --quiet refs/heads/main || true)"
  if [ -n "$parent" ] && [ "$(GIT_DIR="$repo" git rev-parse "$parent^{tree}")" = "$tree" ]; then
    log "$repo is up to date (main at ${parent:0:12})"
    continue
  fi
  commit="$(GIT_DIR="$repo" git commit-tree "$tree" ${parent:+-p "$parent"} -m "example application $name")"
  GIT_DIR="$repo" git update-ref refs/heads/main "$commit" ${parent:+"$parent"}
  log "$repo: main at ${commit:0:12}"
done
