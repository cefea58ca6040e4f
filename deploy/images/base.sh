#!/usr/bin/env bash
# A Debian base image made here from Debian's packages (nothing can be pulled): mmdebstrap's minbase of
# bookworm plus the packages FLAVOR.packages names, from this machine's apt sources, without
# documentation, manuals, locales or apt's lists. Imported into local container storage as
#   localhost/stageline-base/FLAVOR:<hash>
# where <hash> covers this script, the package list and the apt sources: the same inputs reuse the
# image (seconds), changed ones make a new one (a minute or two, mostly downloads).
#
#   bash deploy/images/base.sh FLAVOR     prints the image reference on stdout
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FLAVOR="${1:?usage: base.sh FLAVOR (runtime, control, build or deploy)}"
LIST="$HERE/$FLAVOR.packages"
SUITE=bookworm
log() { printf 'images: %s\n' "$*" >&2; }

[ -f "$LIST" ] || { log "no package list $LIST"; exit 2; }
command -v mmdebstrap >/dev/null 2>&1 || { log "mmdebstrap is not installed (apt-get install mmdebstrap)"; exit 1; }

# The apt sources that this machine's own apt uses (deb822 and one-line forms both work with mmdebstrap).
SOURCES="$(mktemp)"
trap 'rm -f "$SOURCES"' EXIT
if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
  # Only Debian's own archives: a vendor's repository on the host (disabled or not) stays out of the image.
  for f in /etc/apt/sources.list.d/*.sources; do
    grep -q 'debian.org' "$f" && { cat "$f"; echo; }
  done >"$SOURCES"
fi
[ -s "$SOURCES" ] || grep -hE '^deb .*debian' /etc/apt/sources.list >"$SOURCES" 2>/dev/null || true
[ -s "$SOURCES" ] || { log "no Debian apt source found in /etc/apt (sources.list or sources.list.d/*.sources)"; exit 1; }

packages="$(grep -vE '^\s*(#|$)' "$LIST" | tr -s ' \n' ',' | sed 's/,$//')"
hash="$(cat "${BASH_SOURCE[0]}" "$LIST" "$SOURCES" | sha256sum | cut -c1-16)"
ref="localhost/stageline-base/$FLAVOR:$hash"
if podman image exists "$ref"; then
  log "base $FLAVOR: $ref (reused)"
  echo "$ref"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/stageline-base.XXXXXX")"
trap 'rm -f "$SOURCES"; rm -rf "$work"' EXIT
log "base $FLAVOR: mmdebstrap $SUITE minbase + $packages"
# Recommends stay out (as setup.sh installs); docs, manuals and locales are never unpacked.
mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --include="$packages" \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log "$1"/var/log/apt/*' \
  "$SUITE" "$work/rootfs.tar" - <"$SOURCES" >&2
podman import --quiet --change 'CMD ["/bin/bash"]' "$work/rootfs.tar" "$ref" >/dev/null
log "base $FLAVOR: $ref ($(podman image inspect --format '{{.Size}}' "$ref" | numfmt --to=iec))"
echo "$ref"
