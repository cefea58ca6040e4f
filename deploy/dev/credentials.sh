#!/usr/bin/env bash
# The credentials of a local install: a certificate authority and one certificate per Stageline
# service (TLS on every gRPC server, mutual TLS between services), and a first admin API token.
# Production installs bring their own files instead (STAGELINE_TLS_CA, STAGELINE_TLS_CERT,
# STAGELINE_TLS_KEY, STAGELINE_ADMIN_TOKEN_FILE; see the README's Security section).
#
#   bash deploy/dev/credentials.sh [STATE]   create what is absent under STATE (default $STAGELINE_STATE)
#
# STATE/tls/ca.pem, ca-key.pem               the CA (its key never leaves the directory; 0600)
# STATE/tls/<service>.pem, <service>-key.pem control, planner, build, deploy: server and client
#                                            certificate in one, CN=<service>, O=stageline-service (the
#                                            identity servers read), SANs localhost, 127.0.0.1, ::1, <service>
# STATE/admin.token                          stl_<id>_<secret> (0600): control makes it a live admin
#                                            token at start (STAGELINE_ADMIN_TOKEN_FILE); the CLI's default
# STATE/keys/<key id>.key, STATE/keys/active the installation's secret keys (0600, directory 0700): 32
#                                            random bytes each, base64; `active` names the one new secret
#                                            values are sealed under (STAGELINE_SECRET_KEY_DIR; rotated by
#                                            `stageline admin rotate-key`, which adds keys here)
# Certificates last 825 days; one whose CA changed or that expires within 30 days is remade.
# STAGELINE_TLS_SANS (e.g. "IP:10.226.5.1,IP:10.226.5.11"): more SANs for new certificates, for services
# reached at other addresses (the multi-host scenario's network namespaces).
set -euo pipefail

STATE="${1:-${STAGELINE_STATE:?}}"
DIR="$STATE/tls"
SERVICES=(control planner build deploy)
DAYS=825
log() { printf 'credentials: %s\n' "$*" >&2; }
EXTRA_SANS="${STAGELINE_TLS_SANS:-}"
if [ -n "$EXTRA_SANS" ] && ! [[ "$EXTRA_SANS" =~ ^((IP:[0-9.]+|DNS:[a-z0-9.-]+),?)+$ ]]; then
  log "STAGELINE_TLS_SANS: expected IP:<address> or DNS:<name> entries, comma-separated"
  exit 2
fi

command -v openssl >/dev/null 2>&1 || { log "openssl is not installed (apt-get install openssl)"; exit 1; }
mkdir -p "$DIR"
# Set-up and a test run may both get here at once: one at a time.
exec 9>"$STATE/.credentials.lock"
flock 9
chmod 0700 "$DIR"
umask 077

valid() { # cert [ca]: exists, lasts 30 more days, and (with a CA) was signed by it
  [ -s "$1" ] && openssl x509 -in "$1" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 &&
    { [ -z "${2:-}" ] || openssl verify -CAfile "$2" "$1" >/dev/null 2>&1; }
}

if ! valid "$DIR/ca.pem" || [ ! -s "$DIR/ca-key.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$DAYS" \
    -subj "/O=stageline/CN=Stageline local CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$DIR/ca-key.pem" -out "$DIR/ca.pem" 2>/dev/null
  log "created the local CA $DIR/ca.pem"
fi

for service in "${SERVICES[@]}"; do
  cert="$DIR/$service.pem"
  key="$DIR/$service-key.pem"
  valid "$cert" "$DIR/ca.pem" && [ -s "$key" ] && continue
  csr="$(mktemp)"
  ext="$(mktemp)"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=stageline-service/CN=$service" \
    -keyout "$key" -out "$csr" 2>/dev/null
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" \
    "subjectAltName=DNS:localhost,DNS:$service,IP:127.0.0.1,IP:::1${EXTRA_SANS:+,${EXTRA_SANS%,}}" >"$ext"
  openssl x509 -req -in "$csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca-key.pem" -CAcreateserial \
    -CAserial "$DIR/ca.srl" -days "$DAYS" -extfile "$ext" -out "$cert" 2>/dev/null
  rm -f "$csr" "$ext"
  log "created $cert"
done
chmod 0600 "$DIR"/*-key.pem
chmod 0644 "$DIR/ca.pem"
for service in "${SERVICES[@]}"; do chmod 0644 "$DIR/$service.pem"; done

# The first admin token: 128-bit id, 256-bit secret (the format control's AccessService issues).
if [ ! -s "$STATE/admin.token" ]; then
  secret="$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')"
  printf 'stl_%s_%s\n' "$(openssl rand -hex 16)" "$secret" >"$STATE/admin.token.tmp"
  chmod 0600 "$STATE/admin.token.tmp"
  mv "$STATE/admin.token.tmp" "$STATE/admin.token"
  log "created the first admin token $STATE/admin.token"
fi

# The first secret key (AES-256): every secret value is sealed under the active key before it is stored
# or sent (packages/secrets).
KEYS="$STATE/keys"
mkdir -p "$KEYS"
chmod 0700 "$KEYS"
if [ ! -s "$KEYS/active" ]; then
  id="k$(date -u +%Y%m%d%H%M%S)-$(openssl rand -hex 2)"
  openssl rand -base64 32 >"$KEYS/$id.key"
  chmod 0600 "$KEYS/$id.key"
  printf '%s\n' "$id" >"$KEYS/.active.tmp"
  chmod 0600 "$KEYS/.active.tmp"
  mv "$KEYS/.active.tmp" "$KEYS/active"
  log "created the first secret key $KEYS/$id.key"
fi
