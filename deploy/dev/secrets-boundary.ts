// The secrets boundary, checked on a running stack (README, "Security"): the workload holds its secret
// values; Stageline's own stores never hold them in clear — not a schema of its database (pg_dump), not
// the NATS store directory, not a log, not a file under its state directory (charts live in the deploy
// schema, their secret files sealed; helm's opened copies and the files that carry values to podman are
// gone once read). `npm run demo` ends with this check; the
// e2e test test/e2e/secrets-boundary.test.ts uses scanStores() against a stack of its own.
//
//   node deploy/dev/secrets-boundary.ts --environment-id ID --secret-keys API_TOKEN,DB_PASSWORD
//
// The needles are the values of those keys in the environment's running containers (podman exec env):
// what the workload was given, so a check can never pass by looking for the wrong thing. Reads
// DATABASE_URL (default: the services' default) and STAGELINE_STATE. Exits 1 on any finding.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';

const run = promisify(execFile);

/** Stageline's schemas: each service's own. */
export const SCHEMAS = ['control', 'planner', 'build', 'deploy'] as const;
/** Under the state directory but not Stageline's stores: keys and certificates, and the workload's side. */
const NOT_STORES = new Set(['keys', 'tls', 'registry', 'managed-postgres']);
const SEALED = 'sl:v1:';

export interface StoresToScan {
  databaseUrl: string;
  /** The NATS server's store directory (its JetStream files). */
  natsStoreDir: string;
  /** The services' logs, by name. */
  logs: ReadonlyArray<{ name: string; text: string | Buffer }>;
  /** The services' STAGELINE_STATE. */
  stateDir: string;
  /** The secret values to look for, by a name to report them by (each also as base64: a Secret's data). */
  needles: Readonly<Record<string, string>>;
}

export interface StoresScanned {
  /** `<where>: <needle's name>` for every secret found in clear; empty when the boundary holds. */
  findings: string[];
  /** Files that break the rules on modes: opened charts 0600 in 0700, no runtime inputs left under local/. */
  modes: string[];
  dumpBytes: number;
  /** Sealed values (`sl:v1:` envelopes) in the dump: the secrets are there, sealed. */
  sealedInDump: number;
  natsFiles: number;
  logs: number;
  stateFiles: number;
  chartFiles: number;
  /** Rows of the deploy schema's chart_file table (where charts live), and those holding a sealed value. */
  chartRows: number;
  sealedChartRows: number;
}

/** The data lines of `table` in a plain pg_dump (its COPY block), one per row. */
function dumpRows(dump: string, table: string): string[] {
  const start = dump.indexOf(`\nCOPY ${table} `);
  if (start === -1) return [];
  const body = dump.slice(dump.indexOf('\n', start + 1) + 1);
  return body
    .slice(0, body.indexOf('\n\\.\n'))
    .split('\n')
    .filter((line) => line !== '');
}

/** Every regular file under `dir` (skipping `skip` at its top), with its mode and its directory's. */
export function filesUnder(
  dir: string,
  skip: ReadonlySet<string> = new Set(),
): Array<{ path: string; mode: number; dirMode: number }> {
  const out: Array<{ path: string; mode: number; dirMode: number }> = [];
  const walk = (d: string, top: boolean) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (top && skip.has(e.name)) continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p, false);
      else if (e.isFile()) out.push({ path: p, mode: statSync(p).mode & 0o777, dirMode: statSync(d).mode & 0o777 });
    }
  };
  walk(dir, true);
  return out;
}

/** Which of `needles` occur in `haystack`, as given or as base64. */
export function found(haystack: Buffer | string, needles: readonly string[]): string[] {
  const bytes = typeof haystack === 'string' ? Buffer.from(haystack) : haystack;
  return needles.filter((n) => bytes.includes(n) || bytes.includes(Buffer.from(n).toString('base64')));
}

export async function scanStores(s: StoresToScan): Promise<StoresScanned> {
  const needles = Object.entries(s.needles);
  if (needles.length === 0) throw new Error('no secret values to look for');
  for (const [name, value] of needles) {
    if (value.length < 8) throw new Error(`${name}: ${value.length} characters would find noise, not a secret`);
  }
  const findings: string[] = [];
  const at = (where: string, haystack: Buffer | string) => {
    const hits = new Set(
      found(
        haystack,
        needles.map(([, v]) => v),
      ),
    );
    for (const [name, value] of needles) if (hits.has(value)) findings.push(`${where}: ${name}`);
  };

  const dump = (
    await run('pg_dump', ['--no-owner', ...SCHEMAS.flatMap((x) => ['--schema', x]), s.databaseUrl], {
      maxBuffer: 512 * 1024 * 1024,
    })
  ).stdout;
  for (const schema of SCHEMAS) {
    if (!dump.includes(`CREATE SCHEMA ${schema};`))
      throw new Error(`pg_dump holds no schema ${schema}: wrong database?`);
  }
  at('pg_dump', dump);

  const nats = filesUnder(s.natsStoreDir);
  if (nats.length === 0) throw new Error(`no files under the NATS store ${s.natsStoreDir}`);
  for (const f of nats) at(f.path, readFileSync(f.path));

  for (const log of s.logs) at(`log ${log.name}`, log.text);

  const state = filesUnder(s.stateDir, NOT_STORES);
  for (const f of state) at(f.path, readFileSync(f.path));
  const modes: string[] = [];
  const charts = state.filter((f) => f.path.startsWith(path.join(s.stateDir, 'charts') + path.sep));
  for (const f of charts) {
    if (f.mode !== 0o600 || f.dirMode !== 0o700) {
      modes.push(`${f.path}: 0${f.mode.toString(8)} in 0${f.dirMode.toString(8)} (want 0600 in 0700)`);
    }
  }
  for (const f of state.filter((x) => x.path.startsWith(path.join(s.stateDir, 'local') + path.sep))) {
    modes.push(`${f.path}: a runtime input left after use`);
  }
  const chartRows = dumpRows(dump, 'deploy.chart_file');
  return {
    findings,
    modes,
    dumpBytes: Buffer.byteLength(dump),
    sealedInDump: dump.split(SEALED).length - 1,
    natsFiles: nats.length,
    logs: s.logs.length,
    stateFiles: state.length,
    chartFiles: charts.length,
    chartRows: chartRows.length,
    sealedChartRows: chartRows.filter((row) => row.includes(SEALED)).length,
  };
}

/** The values of `keys` in the environment's running containers (what the workload holds). */
async function workloadSecrets(environmentId: string, keys: readonly string[]): Promise<Map<string, string>> {
  const names = (
    await run('podman', [
      'ps',
      '--filter',
      `label=stageline.io/environment-id=${environmentId}`,
      '--format',
      '{{.Names}}',
    ])
  ).stdout
    .split('\n')
    .filter((n) => n !== '' && !n.endsWith('-infra'));
  const values = new Map<string, string>();
  for (const name of names) {
    for (const line of (await run('podman', ['exec', name, 'env'])).stdout.split('\n')) {
      const eq = line.indexOf('=');
      const key = line.slice(0, eq);
      if (eq > 0 && keys.includes(key)) values.set(key, line.slice(eq + 1));
    }
  }
  return values;
}

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: { 'environment-id': { type: 'string' }, 'secret-keys': { type: 'string' } },
  });
  const environmentId = args['environment-id'] ?? '';
  const keys = (args['secret-keys'] ?? '').split(',').filter((k) => k !== '');
  if (environmentId === '' || keys.length === 0) {
    throw new Error('usage: secrets-boundary.ts --environment-id ID --secret-keys KEY[,KEY…]');
  }
  const stateDir = process.env.STAGELINE_STATE ?? '';
  if (stateDir === '') throw new Error('STAGELINE_STATE is not set');
  const held = await workloadSecrets(environmentId, keys);
  const missing = keys.filter((k) => !held.has(k));
  if (missing.length > 0) throw new Error(`the workload holds no ${missing.join(', ')}: nothing to check`);
  const logDir = path.join(stateDir, 'logs');
  const scanned = await scanStores({
    databaseUrl: process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/stageline',
    natsStoreDir: path.join(stateDir, 'nats', 'store'),
    logs: readdirSync(logDir).map((name) => ({ name, text: readFileSync(path.join(logDir, name)) })),
    stateDir,
    needles: Object.fromEntries(held),
  });
  const holds = scanned.findings.length === 0 && scanned.modes.length === 0;
  console.log(
    [
      `secrets boundary: ${keys.join(', ')} — held by the workload; in clear in Stageline's stores: ${holds ? 'nowhere' : 'FOUND'}`,
      `  pg_dump of ${SCHEMAS.join(', ')}: ${(scanned.dumpBytes / 1024).toFixed(0)} KiB, ${scanned.sealedInDump} sealed values`,
      `  NATS store: ${scanned.natsFiles} files · logs: ${scanned.logs} files · state: ${scanned.stateFiles} files (${scanned.chartFiles} opened chart files) · charts in PostgreSQL: ${scanned.chartRows} files, ${scanned.sealedChartRows} sealed`,
      ...scanned.findings.map((f) => `  FOUND ${f}`),
      ...scanned.modes.map((m) => `  MODE ${m}`),
    ].join('\n'),
  );
  if (!holds) process.exit(1);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e: unknown) => {
    console.error(`secrets-boundary: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
