#!/usr/bin/env bash
# The main job: set up, bring up the stack, then drive it with the stageline CLI as a user would —
# apply the example environment as code, deploy it with the live view, and ask its public service.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$STAGELINE_ROOT"
bash deploy/dev/setup.sh
bash deploy/dev/stack.sh up

stageline() { bash deploy/dev/stageline "$@"; }

echo
echo "\$ stageline apply -f deploy/examples/demo-staging.yaml"
stageline apply -f deploy/examples/demo-staging.yaml
echo
echo "\$ stageline deploy demo/staging --watch"
# Exits non-zero (and so does this script) unless the run succeeds.
stageline deploy demo/staging --watch

# The public service's address, from the run just finished (scripts read the CLI's JSON output).
url="$(stageline history demo/staging --limit 1 -o json | node -e '
  let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => {
    const run = JSON.parse(s).deployments[0];
    const url = run.services.flatMap((x) => x.endpoints ?? []).map((e) => e.url).find((u) => u.startsWith("http"));
    if (!url) { console.error("demo: the run reports no public endpoint"); process.exit(1); }
    console.log(url);
  });')"
echo
echo "\$ curl $url"
curl -fsS --max-time 10 "$url"
# The secrets boundary on this very stack: the workload holds the example's secret and the database
# password Stageline made; Stageline's database, NATS store, logs and state hold neither in clear.
environment_id="$(stageline history demo/staging --limit 1 -o json | node -e '
  let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => console.log(JSON.parse(s).deployments[0].environmentId));')"
echo
echo "\$ node deploy/dev/secrets-boundary.ts --environment-id $environment_id --secret-keys API_TOKEN,DB_PASSWORD"
node deploy/dev/secrets-boundary.ts --environment-id "$environment_id" --secret-keys API_TOKEN,DB_PASSWORD
echo
echo "web console: https://${STAGELINE_CONSOLE_LISTEN:-127.0.0.1:8443} (sign in with the token in $STAGELINE_STATE/admin.token; its certificate is signed by $STAGELINE_STATE/tls/ca.pem)"
echo "stack is still running: 'npm run stack:down' stops it. Next: README.md, \"Using the CLI\"."
