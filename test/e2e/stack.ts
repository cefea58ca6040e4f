// The whole system for end-to-end tests: the four services as real processes (node …/main.ts), on
// the test file's own database and bus prefix, talking over real NATS, PostgreSQL and gRPC — TLS
// everywhere, mutual TLS between the services, the admin token for the test's own calls to control.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Bus } from '@stageline/bus';
import { callUnary, connect, waitForServing } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { control } from '@stageline/proto';
import { freePort, type SecuredNats, startSecuredNats, testSecurity, useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
export type ServiceName = 'control' | 'planner' | 'build' | 'deploy';

const run = promisify(execFile);

async function listEnvironmentIds(client: control.EnvironmentServiceClient | undefined): Promise<string[]> {
  if (!client) return [];
  const ids: string[] = [];
  let pageToken = '';
  do {
    const page = await callUnary(client, 'listEnvironments', { project: '', pageSize: 500, pageToken });
    ids.push(...page.environments.map((e) => e.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return ids;
}

async function removePodmanResources(envIds: string[]): Promise<void> {
  if (envIds.length === 0) return;
  const podman = async (...args: string[]) => (await run('podman', args).catch(() => ({ stdout: '' }))).stdout;
  const ids = new Set(envIds);
  // One listing and one removal per kind: podman is slow per call, not per object.
  const labelled = async (kind: 'pod' | 'network' | 'volume') => {
    const format =
      kind === 'pod' ? '{{.ID}} {{.Labels}}' : kind === 'network' ? '{{.Name}} {{.Labels}}' : '{{.Name}} {{.Labels}}';
    const listing =
      kind === 'pod' ? await podman('pod', 'ps', '--format', format) : await podman(kind, 'ls', '--format', format);
    return listing
      .split('\n')
      .filter((line) => [...ids].some((id) => line.includes(id)))
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

export interface Proc {
  name: string;
  child: ChildProcess;
  address: string;
  output(): string;
  exited: Promise<number | null>;
}

export interface StackOptions {
  /** Extra environment for every service (e.g. MIRROR_REGISTRY). */
  env?: Record<string, string>;
  /** Services to start; default all four. */
  services?: ServiceName[];
  /**
   * The authenticated bus: a nats-server of the file's own (one user per identity, no anonymous
   * client), provisioned apart; each service connects as its own user. Default: the anonymous server.
   */
  securedBus?: boolean;
}

/** Starts the stack before the file's tests and stops it after. */
export function useStack(options: StackOptions = {}) {
  const isolated = useIsolatedEnvironment();
  // Read here, from the test's own STAGELINE_STATE (the services get a temporary one of their own).
  const security = testSecurity();
  const procs: Proc[] = [];
  let stateDir = '';
  let addresses: Record<ServiceName, string> = { control: '', planner: '', build: '', deploy: '' };
  /** The web console's host:port (control serves it; each file its own port). */
  let consoleAddress = '';
  let bus: Bus | undefined;
  let secured: SecuredNats | undefined;
  const clients: {
    environments?: control.EnvironmentServiceClient;
    pipelines?: control.PipelineServiceClient;
    deployments?: control.DeploymentServiceClient;
  } = {};

  const baseEnv = () => ({
    ...process.env,
    ...isolated.env,
    // STAGELINE_TLS_DIR and STAGELINE_ADMIN_TOKEN_FILE: control makes the admin token live at start.
    ...security.env,
    LOG_LEVEL: process.env.STACK_LOG_LEVEL ?? 'info',
    STAGELINE_STATE: stateDir,
    STAGELINE_CONTROL_ADDRESS: addresses.control,
    STAGELINE_BUILD_ADDRESS: addresses.build,
    STAGELINE_PLANNER_ADDRESS: addresses.planner,
    STAGELINE_DEPLOY_ADDRESS: addresses.deploy,
    STAGELINE_CONSOLE_LISTEN: consoleAddress,
    // The dev stack's source policy, plus what tests serve themselves: git repositories in temporary
    // directories, git and registries on 127.0.0.1 (any port).
    STAGELINE_SOURCE_ALLOW: `file:///var/lib/stageline/repos/,127.0.0.1:5001,file://${tmpdir()}/,127.0.0.1`,
    ...options.env,
  });

  async function spawnService(name: ServiceName, address: string): Promise<Proc> {
    const child = spawn(process.execPath, [join(root, `services/${name}/src/main.ts`)], {
      // The probe port on a free port too (by default it sits beside gRPC, +100, which may be taken).
      env: { HEALTH_LISTEN: '127.0.0.1:0', ...baseEnv(), ...secured?.env(name), GRPC_LISTEN: address },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr?.on('data', (c: Buffer) => {
      output += c.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const proc: Proc = { name, child, address, output: () => output, exited };
    procs.push(proc);
    try {
      await Promise.race([
        // Generous: on a loaded 2-core machine four services starting at once take a while.
        waitForServing(address, { security: { ca: security.ca }, timeoutMs: 120_000 }),
        exited.then((code) => {
          throw new Error(`${name} exited with ${code} before serving`);
        }),
      ]);
    } catch (e) {
      throw new Error(`${name} did not start: ${(e as Error).message}\n${output.slice(-3000)}`);
    }
    return proc;
  }

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'stageline-e2e-'));
    if (options.securedBus) {
      secured = await startSecuredNats({
        prefix: isolated.busPrefix,
        provision: {
          ...(options.env?.WORKER_ACK_WAIT_MS ? { workerAckWaitMs: Number(options.env.WORKER_ACK_WAIT_MS) } : {}),
          ...(options.env?.DEPLOY_SLOTS ? { deploySlots: Number(options.env.DEPLOY_SLOTS) } : {}),
          ...(options.env?.BUILD_LOCK_TTL_MS ? { buildLockTtlMs: Number(options.env.BUILD_LOCK_TTL_MS) } : {}),
        },
      });
    }
    const names = options.services ?? ['control', 'planner', 'build', 'deploy'];
    addresses = {
      control: `127.0.0.1:${await freePort()}`,
      planner: `127.0.0.1:${await freePort()}`,
      build: `127.0.0.1:${await freePort()}`,
      deploy: `127.0.0.1:${await freePort()}`,
    };
    consoleAddress = `127.0.0.1:${await freePort()}`;
    await Promise.all(names.map((n) => spawnService(n, addresses[n])));
    // control's public API: TLS and the admin token, like any user.
    clients.environments = connect(control.EnvironmentServiceClient, addresses.control, security.user());
    clients.pipelines = connect(control.PipelineServiceClient, addresses.control, security.user());
    clients.deployments = connect(control.DeploymentServiceClient, addresses.control, security.user());
    bus = await Bus.connect({
      url: secured?.url ?? isolated.natsUrl,
      prefix: isolated.busPrefix,
      name: 'e2e',
      log: createLogger({ service: 'e2e', level: 'silent' }),
      // On the secured bus the test reads streams as the provision identity (it publishes nothing).
      credentialsFile: secured?.credentialsFile('provision'),
      provisioned: false,
    });
  }, 240_000);

  afterAll(async () => {
    // What the test file deployed on podman goes with it: pods, networks and volumes are labelled
    // with their environment's id.
    const envIds = await listEnvironmentIds(clients.environments).catch(() => []);
    for (const c of Object.values(clients)) c?.close();
    await removePodmanResources(envIds);
    await bus?.close();
    await Promise.all(
      procs.map(async (p) => {
        if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
        const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
        await p.exited;
        clearTimeout(timer);
      }),
    );
    await secured?.stop();
    if (process.env.STACK_KEEP_LOGS) for (const p of procs) console.log(`--- ${p.name}\n${p.output()}`);
    rmSync(stateDir, { recursive: true, force: true });
  }, 180_000);

  return {
    isolated,
    /**
     * The test credentials: `security.user()` for control's public API; BuildService and
     * ReleaseService are internal, reached as a Stageline service (`security.service('control')`).
     */
    security,
    get environments() {
      return clients.environments!;
    },
    get pipelines() {
      return clients.pipelines!;
    },
    get deployments() {
      return clients.deployments!;
    },
    get bus() {
      return bus!;
    },
    /** The web console control serves: `https://127.0.0.1:<port>` (TLS with the test CA). */
    get consoleUrl() {
      return `https://${consoleAddress}`;
    },
    /** The authenticated bus (`securedBus: true`): its URL and each identity's credentials. */
    get securedBus() {
      if (secured === undefined) throw new Error('useStack({ securedBus: true }) only');
      return secured;
    },
    procs,
    /** The services' STAGELINE_STATE (charts, local runtime inputs), a temporary directory of the file's. */
    get stateDir() {
      return stateDir;
    },
    /** Another process of a worker service (scaling, crash tests). */
    async spawnWorker(name: 'build' | 'deploy'): Promise<Proc> {
      return spawnService(name, `127.0.0.1:${await freePort()}`);
    },
    /** A process of the service on a given address: where a killed one was (the others call it there). */
    async spawnAt(name: ServiceName, address: string): Promise<Proc> {
      return spawnService(name, address);
    },
    /** A running process of the service (the first one started that is still alive). */
    live(name: ServiceName): Proc {
      const proc = procs.find((p) => p.name === name && p.child.exitCode === null && p.child.signalCode === null);
      if (proc === undefined) throw new Error(`no ${name} process is running`);
      return proc;
    },
    /**
     * kill -9 of a running process of the service; after `pauseMs`, the same service again on the same
     * address (the others and the test's clients find it where it was).
     */
    async crash(name: ServiceName, pauseMs = 1_000): Promise<Proc> {
      const proc = this.live(name);
      proc.child.kill('SIGKILL');
      await proc.exited;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
      return spawnService(name, proc.address);
    },
    logs(name: ServiceName): string {
      return procs
        .filter((p) => p.name === name)
        .map((p) => p.output())
        .join('\n');
    },
  };
}

export type Stack = ReturnType<typeof useStack>;

const TERMINAL = [
  control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED,
  control.DeploymentStatus.DEPLOYMENT_STATUS_FAILED,
  control.DeploymentStatus.DEPLOYMENT_STATUS_CANCELED,
] as control.DeploymentStatus[];

/** Follows a run with WatchDeployment until it finishes; returns the final state and every update seen. */
export async function watchToEnd(
  stack: Stack,
  deploymentId: string,
  timeoutMs = 120_000,
): Promise<{ final: control.Deployment; updates: control.Deployment[] }> {
  const updates: control.Deployment[] = [];
  const call = stack.deployments.watchDeployment({ deploymentId }, { deadline: Date.now() + timeoutMs });
  await new Promise<void>((resolve, reject) => {
    call.on('data', (m: control.WatchDeploymentResponse) => {
      if (m.deployment) updates.push(m.deployment);
    });
    call.on('end', () => resolve());
    call.on('error', (e) => reject(e));
  });
  const final = updates.at(-1);
  if (!final || !TERMINAL.includes(final.status)) {
    throw new Error(
      `run ${deploymentId} did not finish: last status ${final ? control.deploymentStatusToJSON(final.status) : 'none'}`,
    );
  }
  return { final, updates };
}

export async function createEnvironment(
  stack: Stack,
  name: string,
  settings: Partial<control.EnvironmentSettings> = {},
) {
  return callUnary(
    stack.environments,
    'createEnvironment',
    control.CreateEnvironmentRequest.fromPartial({ project: 'e2e', name, settings }),
  );
}

export const stateName = (s: control.ServiceState) => control.serviceStateToJSON(s).replace('SERVICE_STATE_', '');
export const stageStatusName = (s: control.StageStatus) => control.stageStatusToJSON(s).replace('STAGE_STATUS_', '');
export const runStatusName = (s: control.DeploymentStatus) =>
  control.deploymentStatusToJSON(s).replace('DEPLOYMENT_STATUS_', '');

/** The example image deploy/dev/example-images.sh pushes to the local "external" registry. */
export const EXAMPLE_IMAGE = process.env.EXAMPLE_IMAGE ?? '127.0.0.1:5001/examples/busybox:1.36';

export interface Interval {
  start: number;
  end: number;
}

/** Every step of one kind in a run, as time intervals. */
export function stepsOf(d: control.Deployment, kind: control.StepKind): Interval[] {
  return d.services.flatMap((s) =>
    s.steps
      .filter((st) => st.kind === kind && st.startedAt && st.finishedAt)
      .map((st) => ({ start: st.startedAt!.getTime(), end: st.finishedAt!.getTime() })),
  );
}

/** The most intervals open at one instant (an end at t closes before a start at t). */
export function maxOverlap(intervals: Interval[]): number {
  const points = intervals.flatMap((i) => [
    { t: i.start, d: 1 },
    { t: i.end, d: -1 },
  ]);
  points.sort((a, b) => a.t - b.t || a.d - b.d);
  let open = 0;
  let max = 0;
  for (const p of points) {
    open += p.d;
    max = Math.max(max, open);
  }
  return max;
}
