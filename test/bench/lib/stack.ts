// The whole system for one benchmark scenario: the four services as real processes (as test/e2e/stack.ts
// starts them), on a fresh database and bus prefix of their own, talking over the machine's NATS and
// PostgreSQL. Extra build/deploy worker processes can be added and removed while it runs. TLS as in
// production: the services' certificates and the admin token come from the test credentials (testkit).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { callUnary, connect as connectGrpc, waitForServing } from '@stageline/grpc';
import { control } from '@stageline/proto';
import {
  type FreshDatabase,
  freePort,
  freshBusPrefix,
  freshDatabase,
  resolvePostgres,
  testSecurity,
} from '@stageline/testkit';
import pg from 'pg';
import type { CpuTarget } from './cpu.ts';
import { type NatsCounters, startBenchNats } from './nats.ts';

export const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const run = promisify(execFile);

export type ServiceName = 'control' | 'planner' | 'build' | 'deploy';

export interface NoopDurations {
  /** Every job (STAGELINE_NOOP_MS). */
  ms?: number;
  buildMs?: number;
  mirrorMs?: number;
  deployMs?: number;
}

export interface BenchStackOptions {
  /** Names the log directory. */
  label: string;
  /** `noop`: the benchmark-only executor (nothing is built or deployed); `real`: buildah, registry, podman. */
  executor: 'noop' | 'real';
  noop?: NoopDurations;
  /** Processes of each worker service at start (default 1 each). */
  workers?: { build?: number; deploy?: number };
  /** Extra environment for every service. */
  env?: Record<string, string>;
  /** Where service logs go (one file per process). */
  logDir: string;
  /** Extra environment for one service (e.g. LOG_LEVEL=debug for the planner's query log). */
  serviceEnv?: Partial<Record<ServiceName, Record<string, string>>>;
  /** Services run with `node --cpu-prof` (profiles land in <logDir>/<label>/profiles at exit). */
  profile?: readonly ServiceName[];
}

export interface Proc {
  name: ServiceName;
  child: ChildProcess;
  address: string;
  logFile: string;
  exited: Promise<number | null>;
}

const TERMINAL = new Set<number>([
  control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED,
  control.DeploymentStatus.DEPLOYMENT_STATUS_FAILED,
  control.DeploymentStatus.DEPLOYMENT_STATUS_CANCELED,
]);

// --- a protobuf reader just deep enough for DeploymentEvent.deployment.{id,status} -------------------
// Run events carry the whole run (every service and step); decoding each in full would make the
// benchmark itself a noticeable CPU consumer on a 2-core machine.

function varint(buf: Uint8Array, pos: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const b = buf[pos++]!;
    result += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [result, pos];
    shift += 7;
  }
}

function* fields(buf: Uint8Array, start = 0, end = buf.length) {
  let pos = start;
  while (pos < end) {
    const [key, p] = varint(buf, pos);
    pos = p;
    const no = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      const [value, q] = varint(buf, pos);
      pos = q;
      yield { no, value, start: 0, end: 0 };
    } else if (wire === 2) {
      const [len, q] = varint(buf, pos);
      yield { no, value: 0, start: q, end: q + len };
      pos = q + len;
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else {
      throw new Error(`unexpected wire type ${wire}`);
    }
  }
}

/** deployment.id (field 3 → 1) and deployment.status (field 3 → 4) of a DeploymentEvent. */
export function peekRun(data: Uint8Array): { id: string; status: number } | undefined {
  for (const f of fields(data)) {
    if (f.no !== 3) continue;
    let id = '';
    let status = 0;
    for (const g of fields(data, f.start, f.end)) {
      if (g.no === 1) id = Buffer.from(data.buffer, data.byteOffset + g.start, g.end - g.start).toString();
      else if (g.no === 4) status = g.value;
    }
    return { id, status };
  }
  return undefined;
}

export interface RunSeen {
  status: number;
  /** When the benchmark received the run's terminal event (ms since epoch). */
  at: number;
}

/** Follows every run of the stack through its events (core NATS): who finished, when, and event volume. */
export class RunTracker {
  readonly #finished = new Map<string, RunSeen>();
  readonly #waiters = new Map<string, Array<(seen: RunSeen) => void>>();
  events = 0;
  bytes = 0;
  #sub: Subscription | undefined;

  start(nc: NatsConnection, prefix: string): void {
    this.#sub = nc.subscribe(`${prefix}.events.runs.>`, {
      callback: (err, msg) => {
        if (err) return;
        this.events++;
        this.bytes += msg.data.length;
        const run = peekRun(msg.data);
        if (!run || !TERMINAL.has(run.status) || this.#finished.has(run.id)) return;
        const seen = { status: run.status, at: Date.now() };
        this.#finished.set(run.id, seen);
        for (const resolve of this.#waiters.get(run.id) ?? []) resolve(seen);
        this.#waiters.delete(run.id);
      },
    });
  }

  stop(): void {
    this.#sub?.unsubscribe();
  }

  /** Resolves when the run has finished (at once if it already has). */
  wait(deploymentId: string, timeoutMs: number): Promise<RunSeen> {
    const seen = this.#finished.get(deploymentId);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`run ${deploymentId} did not finish within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const list = this.#waiters.get(deploymentId) ?? [];
      list.push((s) => {
        clearTimeout(timer);
        resolve(s);
      });
      this.#waiters.set(deploymentId, list);
    });
  }
}

export interface BenchStack {
  natsUrl: string;
  databaseUrl: string;
  databaseName: string;
  busPrefix: string;
  procs: Proc[];
  environments: control.EnvironmentServiceClient;
  pipelines: control.PipelineServiceClient;
  deployments: control.DeploymentServiceClient;
  runs: RunTracker;
  /** Messages through the stack's own nats-server so far (its /varz). */
  natsCounters(): Promise<NatsCounters>;
  spawnWorker(name: 'build' | 'deploy'): Promise<Proc>;
  stopProc(proc: Proc): Promise<void>;
  /** One CPU figure per service (all its processes), plus the shared NATS and PostgreSQL servers. */
  cpuTargets(): CpuTarget[];
  /** The last lines of every process's log (for an error message). */
  tail(lines?: number): string;
  stop(): Promise<void>;
}

/** What was deployed on podman goes with the stack: pods, networks and volumes carry their environment's id. */
export async function removePodmanResources(envIds: readonly string[], env: NodeJS.ProcessEnv = process.env) {
  if (envIds.length === 0) return;
  const podman = async (...args: string[]) => (await run('podman', args, { env }).catch(() => ({ stdout: '' }))).stdout;
  const labelled = async (kind: 'pod' | 'network' | 'volume') => {
    const listing =
      kind === 'pod'
        ? await podman('pod', 'ps', '--format', '{{.ID}} {{.Labels}}')
        : await podman(kind, 'ls', '--format', '{{.Name}} {{.Labels}}');
    return listing
      .split('\n')
      .filter((line) => envIds.some((id) => line.includes(id)))
      .map((line) => line.split(' ')[0]!)
      .filter(Boolean);
  };
  const pods = await labelled('pod');
  if (pods.length > 0) await podman('pod', 'rm', '-f', '-t', '0', ...pods);
  const networks = await labelled('network');
  if (networks.length > 0) await podman('network', 'rm', '-f', ...networks);
  const volumes = await labelled('volume');
  if (volumes.length > 0) await podman('volume', 'rm', '-f', ...volumes);
}

async function listEnvironmentIds(client: control.EnvironmentServiceClient): Promise<string[]> {
  const ids: string[] = [];
  let pageToken = '';
  do {
    const page = await callUnary(client, 'listEnvironments', { project: '', pageSize: 500, pageToken });
    ids.push(...page.environments.map((e) => e.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return ids;
}

export async function startStack(options: BenchStackOptions): Promise<BenchStack> {
  // A nats-server of the scenario's own: its message counters and CPU are the stack's alone.
  const [nats] = await Promise.all([startBenchNats(), resolvePostgres()]);
  const database: FreshDatabase = await freshDatabase();
  const busPrefix = freshBusPrefix();
  // From the bench's own STAGELINE_STATE (made there if missing); the services get a temporary one.
  const security = testSecurity();
  const stateDir = mkdtempSync(join(tmpdir(), 'stageline-bench-'));
  const logDir = join(options.logDir, options.label);
  mkdirSync(logDir, { recursive: true });
  const procs: Proc[] = [];
  const addresses: Record<ServiceName, string> = {
    control: `127.0.0.1:${await freePort()}`,
    planner: `127.0.0.1:${await freePort()}`,
    build: `127.0.0.1:${await freePort()}`,
    deploy: `127.0.0.1:${await freePort()}`,
  };
  const noop = options.noop ?? {};
  const executorEnv: Record<string, string> =
    options.executor === 'noop'
      ? {
          STAGELINE_EXECUTOR: 'noop',
          STAGELINE_NOOP_MS: String(noop.ms ?? 0),
          ...(noop.buildMs !== undefined ? { STAGELINE_NOOP_BUILD_MS: String(noop.buildMs) } : {}),
          ...(noop.mirrorMs !== undefined ? { STAGELINE_NOOP_MIRROR_MS: String(noop.mirrorMs) } : {}),
          ...(noop.deployMs !== undefined ? { STAGELINE_NOOP_DEPLOY_MS: String(noop.deployMs) } : {}),
        }
      : {};
  const env = {
    ...process.env,
    NATS_URL: nats.url,
    DATABASE_URL: database.url,
    STAGELINE_BUS_PREFIX: busPrefix,
    // STAGELINE_TLS_DIR and STAGELINE_ADMIN_TOKEN_FILE: control makes the admin token live at start.
    ...security.env,
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'info',
    STAGELINE_STATE: stateDir,
    STAGELINE_CONTROL_ADDRESS: addresses.control,
    STAGELINE_BUILD_ADDRESS: addresses.build,
    STAGELINE_PLANNER_ADDRESS: addresses.planner,
    STAGELINE_DEPLOY_ADDRESS: addresses.deploy,
    // The console is served as by default, on a port of the bench's own (8443 may be the dev stack's).
    STAGELINE_CONSOLE_LISTEN: `127.0.0.1:${await freePort()}`,
    // The dev source policy, plus the fresh example repositories the scenarios make in temporary directories.
    STAGELINE_SOURCE_ALLOW: `file:///var/lib/stageline/repos/,127.0.0.1:5001,file://${tmpdir()}/`,
    ...executorEnv,
    ...options.env,
  };
  let counter = 0;

  async function spawnService(name: ServiceName, address: string): Promise<Proc> {
    const logFile = join(logDir, `${name}-${++counter}.log`);
    // Logs go straight to a file: the benchmark process never spends CPU reading them.
    const fd = openSync(logFile, 'a');
    const nodeArgs = options.profile?.includes(name)
      ? [
          '--cpu-prof',
          `--cpu-prof-dir=${join(logDir, 'profiles')}`,
          `--cpu-prof-name=${name}-${counter + 1}.cpuprofile`,
        ]
      : [];
    const child = spawn(process.execPath, [...nodeArgs, join(ROOT, `services/${name}/src/main.ts`)], {
      env: { HEALTH_LISTEN: '127.0.0.1:0', ...env, ...options.serviceEnv?.[name], GRPC_LISTEN: address },
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const proc: Proc = { name, child, address, logFile, exited };
    procs.push(proc);
    try {
      await Promise.race([
        waitForServing(address, { security: { ca: security.ca }, timeoutMs: 60_000 }),
        exited.then((code) => {
          throw new Error(`${name} exited with ${code} before serving`);
        }),
      ]);
    } catch (e) {
      throw new Error(`${name} did not start: ${(e as Error).message}\n${tailOf(logFile, 40)}`);
    }
    return proc;
  }

  async function stopProc(proc: Proc): Promise<void> {
    if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGTERM');
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 15_000);
    await proc.exited;
    clearTimeout(timer);
    const i = procs.indexOf(proc);
    if (i >= 0) procs.splice(i, 1);
  }

  // control's public API: TLS and the admin token, like any user.
  const user = security.user();
  let nc: NatsConnection | undefined;
  const runs = new RunTracker();
  let environments: control.EnvironmentServiceClient | undefined;
  let pipelines: control.PipelineServiceClient | undefined;
  let deployments: control.DeploymentServiceClient | undefined;

  // PostgreSQL is shared with other work on the machine: what counts for the stack is this database's
  // backends (the services' connections, polled from pg_stat_activity) and the server's writers (WAL
  // writer, checkpointer, background writer: they write every database's commits, ours among them).
  const pgWatch = new pg.Client({ connectionString: database.url });
  let pgPids: number[] = [];
  let pgTimer: NodeJS.Timeout | undefined;
  const pollPg = async () => {
    const { rows } = await pgWatch.query<{ pid: number }>(
      `select pid from pg_stat_activity
        where (datname = current_database() and pid <> pg_backend_pid())
           or backend_type in ('walwriter', 'checkpointer', 'background writer')`,
    );
    pgPids = rows.map((r) => r.pid);
  };

  async function stop(): Promise<void> {
    clearInterval(pgTimer);
    await pgWatch.end().catch(() => undefined);
    const envIds = environments ? await listEnvironmentIds(environments).catch(() => []) : [];
    environments?.close();
    pipelines?.close();
    deployments?.close();
    runs.stop();
    await nc?.close().catch(() => undefined);
    await Promise.all([...procs].map((p) => stopProc(p)));
    if (options.executor === 'real') await removePodmanResources(envIds, env);
    await nats.stop();
    await database.drop().catch(() => undefined);
    rmSync(stateDir, { recursive: true, force: true });
  }

  try {
    // control and planner call each other; both wait for their peer lazily, so start them together.
    await Promise.all([spawnService('control', addresses.control), spawnService('planner', addresses.planner)]);
    const starts: Promise<Proc>[] = [];
    for (let i = 0; i < (options.workers?.build ?? 1); i++) {
      starts.push(spawnService('build', i === 0 ? addresses.build : `127.0.0.1:${await freePort()}`));
    }
    for (let i = 0; i < (options.workers?.deploy ?? 1); i++) {
      starts.push(spawnService('deploy', i === 0 ? addresses.deploy : `127.0.0.1:${await freePort()}`));
    }
    await Promise.all(starts);
    environments = connectGrpc(control.EnvironmentServiceClient, addresses.control, user);
    pipelines = connectGrpc(control.PipelineServiceClient, addresses.control, user);
    deployments = connectGrpc(control.DeploymentServiceClient, addresses.control, user);
    nc = await connect({ servers: nats.url, name: 'stageline-bench' });
    runs.start(nc, busPrefix);
    await pgWatch.connect();
    await pollPg();
    pgTimer = setInterval(() => void pollPg().catch(() => undefined), 250);
  } catch (e) {
    await stop();
    throw e;
  }

  const byService = (name: ServiceName) => () => procs.filter((p) => p.name === name).map((p) => p.child.pid ?? 0);
  return {
    natsUrl: nats.url,
    databaseUrl: database.url,
    databaseName: database.name,
    busPrefix,
    procs,
    environments,
    pipelines,
    deployments,
    runs,
    natsCounters: () => nats.counters(),
    async spawnWorker(name) {
      return spawnService(name, `127.0.0.1:${await freePort()}`);
    },
    stopProc,
    cpuTargets: () => [
      { name: 'control', pids: byService('control') },
      { name: 'planner', pids: byService('planner') },
      { name: 'build', pids: byService('build') },
      { name: 'deploy', pids: byService('deploy') },
      { name: 'nats-server', pids: () => [nats.pid] },
      { name: 'postgres', pids: () => pgPids },
      { name: 'bench', pids: () => [process.pid] },
    ],
    tail: (lines = 20) => procs.map((p) => `--- ${p.name} (${p.logFile})\n${tailOf(p.logFile, lines)}`).join('\n'),
    stop,
  };
}

function tailOf(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}
