// Several hosts on one machine (issue 26): each host a network namespace joined to a bridge of this
// file's own (a private /24, loopback and those namespaces only) by a veth pair. Three NATS nodes (a
// JetStream cluster, R3 streams and buckets), two planners, two build and two deploy workers, each on a
// host of its own; control and a PostgreSQL of the file's own on the bridge's address, reachable from
// every host. Builds run the noop executor (the build hosts would otherwise share podman's storage); the
// deploy host `d1` deploys with real podman, `d2` with the noop executor; every `local` environment is
// bound to one of them (settings.deploy_host) and only that host's worker takes its jobs.
//
// Mid-run faults: a NATS node cut off (its link down, then up), a planner killed, the deploy worker of
// `d1` killed (a replacement with an empty disk takes its jobs: charts are in PostgreSQL). Runs complete;
// every accepted request has a finished run; each service of the podman host has exactly one release
// per run; and every run's event sequence has no gap and no duplicate, each event made by exactly one
// planner (DeploymentEvent.planner). Prints: fault | runs | seconds the fault cost (against the
// baseline phase's; printed, never asserted).
//
// Processes are started with `ip netns exec <ns> …`, except the podman deploy host's: `ip netns exec`
// remounts /sys, where podman then finds no cgroup; `nsenter --net=…` enters the same namespace only.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Bus } from '@stageline/bus';
import { callUnary, connect, waitForServing } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { bus as busv1, control } from '@stageline/proto';
import {
  type FaultServer,
  freePort,
  type SecuredNatsCluster,
  startOwnPostgres,
  startSecuredNatsCluster,
  type TestSecurity,
  testSecurity,
} from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE_IMAGE, runStatusName, stateName } from './stack.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = createLogger({ service: 'multihost', level: 'silent' });

// --- the network: a bridge, and a namespace per host ------------------------------------------------

const tag = randomBytes(2).toString('hex');
/** A /24 of 10.226.100–249 that no interface of the machine has an address in. */
function freeSubnet(): string {
  const taken = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
  for (let i = 0; i < 150; i++) {
    const candidate = `10.226.${100 + ((Number.parseInt(tag, 16) + i) % 150)}`;
    if (!taken.includes(` ${candidate}.`)) return candidate;
  }
  throw new Error('no free 10.226.x.0/24 for the hosts');
}
const net = freeSubnet();
const bridge = `s26${tag}br`;
type HostName = 'n1' | 'n2' | 'n3' | 'p1' | 'p2' | 'b1' | 'b2' | 'd1' | 'd2';
const HOSTS: HostName[] = ['n1', 'n2', 'n3', 'p1', 'p2', 'b1', 'b2', 'd1', 'd2'];
const address = (h: HostName) => `${net}.${11 + HOSTS.indexOf(h)}`;
const nsName = (h: HostName) => `sl26-${tag}-${h}`;
const hostLink = (h: HostName) => `s${tag}${h}h`;
const BRIDGE_ADDRESS = `${net}.1`;

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

async function buildNetwork(): Promise<void> {
  await ip('link', 'add', bridge, 'type', 'bridge');
  await ip('addr', 'add', `${BRIDGE_ADDRESS}/24`, 'dev', bridge);
  await ip('link', 'set', bridge, 'up');
  for (const h of HOSTS) {
    const ns = nsName(h);
    const inner = `s${tag}${h}n`;
    await ip('netns', 'add', ns);
    await ip('link', 'add', hostLink(h), 'type', 'veth', 'peer', 'name', inner);
    await ip('link', 'set', inner, 'netns', ns);
    await ip('link', 'set', hostLink(h), 'master', bridge);
    await ip('link', 'set', hostLink(h), 'up');
    await ip('-n', ns, 'addr', 'add', `${address(h)}/24`, 'dev', inner);
    await ip('-n', ns, 'link', 'set', inner, 'up');
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
}

/** Removes every namespace (their veth ends go with them) and the bridge; never throws. */
async function removeNetwork(): Promise<void> {
  for (const h of HOSTS) {
    await ip('netns', 'del', nsName(h)).catch(() => undefined);
    await ip('link', 'del', hostLink(h)).catch(() => undefined);
  }
  await ip('link', 'del', bridge).catch(() => undefined);
}

// --- processes on hosts ----------------------------------------------------------------------------

type ServiceName = 'control' | 'planner' | 'build' | 'deploy';
interface Proc {
  name: string;
  host: HostName | 'machine';
  child: ChildProcess;
  address: string;
  output(): string;
  exited: Promise<number | null>;
}
const procs: Proc[] = [];
const scratch = mkdtempSync(join(tmpdir(), 'stageline-multihost-'));
let postgres: FaultServer | undefined;
let cluster: SecuredNatsCluster | undefined;
let security: TestSecurity;
let image = '';
let prefix = '';
const addresses: Record<ServiceName, string> = { control: '', planner: '', build: '', deploy: '' };

function serviceEnv(name: ServiceName, stateDir: string, listen: string): NodeJS.ProcessEnv {
  if (cluster === undefined || postgres === undefined) throw new Error('no cluster or database');
  return {
    ...process.env,
    ...security.env,
    ...cluster.env(name),
    STAGELINE_BUS_PREFIX: prefix,
    DATABASE_URL: `postgres://postgres@${BRIDGE_ADDRESS}:${postgres.port}/postgres`,
    LOG_LEVEL: 'info',
    STAGELINE_STATE: stateDir,
    GRPC_LISTEN: listen,
    HEALTH_LISTEN: `${listen.slice(0, listen.lastIndexOf(':'))}:0`,
    STAGELINE_CONTROL_ADDRESS: addresses.control,
    STAGELINE_PLANNER_ADDRESS: addresses.planner,
    STAGELINE_BUILD_ADDRESS: addresses.build,
    STAGELINE_DEPLOY_ADDRESS: addresses.deploy,
    STAGELINE_CONSOLE_LISTEN: 'off',
    STAGELINE_SOURCE_ALLOW: '127.0.0.1',
    STAGELINE_DEPLOY_HOSTS: 'd1,d2',
  };
}

async function spawnService(
  name: ServiceName,
  host: HostName | 'machine',
  listen: string,
  extra: Record<string, string> = {},
): Promise<Proc> {
  const stateDir = mkdtempSync(join(scratch, `${host}-${name}-`));
  const node = [process.execPath, join(root, `services/${name}/src/main.ts`)];
  const argv =
    host === 'machine'
      ? node
      : host === 'd1'
        ? ['nsenter', `--net=/run/netns/${nsName(host)}`, ...node]
        : ['ip', 'netns', 'exec', nsName(host), ...node];
  const child = spawn(argv[0] as string, argv.slice(1), {
    env: { ...serviceEnv(name, stateDir, listen), ...extra },
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
  const proc: Proc = { name, host, child, address: listen, output: () => output, exited };
  procs.push(proc);
  try {
    await Promise.race([
      waitForServing(listen, { security: { ca: security.ca }, timeoutMs: 120_000 }),
      exited.then((code) => {
        throw new Error(`exited with ${code} before serving`);
      }),
    ]);
  } catch (e) {
    throw new Error(`${name} on ${host} did not start: ${(e as Error).message}\n${output.slice(-3000)}`);
  }
  return proc;
}

function live(name: ServiceName, host: HostName): Proc {
  const p = procs.find((x) => x.name === name && x.host === host && x.child.exitCode === null && !x.child.killed);
  if (p === undefined) throw new Error(`no ${name} running on ${host}`);
  return p;
}

async function kill(p: Proc): Promise<void> {
  p.child.kill('SIGKILL');
  await p.exited;
}

const BUILD_ENV = { STAGELINE_EXECUTOR: 'noop', STAGELINE_NOOP_MS: '1500' };
const deployEnv = (host: 'd1' | 'd2'): Record<string, string> =>
  host === 'd1'
    ? { DEPLOY_HOST: 'd1' }
    : { DEPLOY_HOST: 'd2', STAGELINE_EXECUTOR: 'noop', STAGELINE_NOOP_DEPLOY_MS: '2000' };

// --- the clients of the test -----------------------------------------------------------------------

let environments: control.EnvironmentServiceClient;
let deployments: control.DeploymentServiceClient;
let admin: Bus | undefined;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the multi-host scenario makes network namespaces: it runs as root');
  prefix = `mh${tag}`;
  // The scenario's own credentials: the services' certificates also name the hosts' addresses.
  const stateDir = join(scratch, 'credentials');
  execFileSync('bash', [join(root, 'deploy/dev/credentials.sh'), stateDir], {
    env: {
      ...process.env,
      STAGELINE_TLS_SANS: [BRIDGE_ADDRESS, ...HOSTS.map(address)].map((a) => `IP:${a}`).join(','),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  security = testSecurity({ ...process.env, STAGELINE_STATE: stateDir });
  // The podman host runs an image of the machine's store (nothing to pull from inside a namespace).
  image = `localhost/stageline-multihost/busybox:${tag}`;
  await run('podman', ['tag', EXAMPLE_IMAGE, image]).catch(async () => {
    await run('podman', ['pull', EXAMPLE_IMAGE]);
    await run('podman', ['tag', EXAMPLE_IMAGE, image]);
  });

  await buildNetwork();
  postgres = await startOwnPostgres({ listen: { addresses: [BRIDGE_ADDRESS], subnet: `${net}.0/24` } });
  cluster = await startSecuredNatsCluster({
    prefix,
    nodes: (['n1', 'n2', 'n3'] as const).map((h) => ({
      host: address(h),
      port: 4222,
      clusterPort: 6222,
      prefix: ['ip', 'netns', 'exec', nsName(h)],
    })),
    provision: { deployHosts: ['d1', 'd2'] },
  });

  addresses.control = `${BRIDGE_ADDRESS}:${await freePort()}`;
  addresses.planner = `${address('p1')}:50052`;
  addresses.build = `${address('b1')}:50053`;
  addresses.deploy = `${address('d1')}:50054`;
  await spawnService('control', 'machine', addresses.control);
  await Promise.all([
    spawnService('planner', 'p1', addresses.planner),
    spawnService('planner', 'p2', `${address('p2')}:50052`),
    spawnService('build', 'b1', addresses.build, { ...BUILD_ENV, STAGELINE_NOOP_IMAGE: image }),
    spawnService('build', 'b2', `${address('b2')}:50053`, { ...BUILD_ENV, STAGELINE_NOOP_IMAGE: image }),
    spawnService('deploy', 'd1', addresses.deploy, deployEnv('d1')),
    spawnService('deploy', 'd2', `${address('d2')}:50054`, deployEnv('d2')),
  ]);
  environments = connect(control.EnvironmentServiceClient, addresses.control, security.user());
  deployments = connect(control.DeploymentServiceClient, addresses.control, security.user());
  admin = await Bus.connect({
    url: cluster.url,
    prefix,
    name: 'multihost-test',
    log,
    credentialsFile: cluster.credentialsFile('provision'),
    provisioned: false,
  });
}, 300_000);

afterAll(async () => {
  printTable();
  environments?.close();
  deployments?.close();
  await admin?.close().catch(() => undefined);
  await Promise.all(
    procs.map(async (p) => {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
      const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
      await p.exited;
      clearTimeout(timer);
    }),
  );
  if (process.env.STACK_KEEP_LOGS) for (const p of procs) console.log(`--- ${p.name} on ${p.host}\n${p.output()}`);
  // The podman host's pods, networks and volumes carry their environment's id.
  const ids = [...createdEnvironments];
  const listing = await run('podman', ['pod', 'ps', '--format', '{{.ID}} {{.Labels}}']).catch(() => ({ stdout: '' }));
  const pods = listing.stdout
    .split('\n')
    .filter((l) => ids.some((id) => l.includes(id)))
    .map((l) => l.split(' ')[0] as string);
  if (pods.length > 0) await run('podman', ['pod', 'rm', '-f', '-t', '0', ...pods]).catch(() => undefined);
  for (const kind of ['network', 'volume'] as const) {
    const out = await run('podman', [kind, 'ls', '--format', '{{.Name}} {{.Labels}}']).catch(() => ({ stdout: '' }));
    const names = out.stdout
      .split('\n')
      .filter((l) => ids.some((id) => l.includes(id)))
      .map((l) => l.split(' ')[0] as string);
    if (names.length > 0) await run('podman', [kind, 'rm', '-f', ...names]).catch(() => undefined);
  }
  await run('podman', ['rmi', image]).catch(() => undefined);
  await cluster?.stop().catch(() => undefined);
  await postgres?.destroy().catch(() => undefined);
  await removeNetwork();
  rmSync(scratch, { recursive: true, force: true });
}, 180_000);

// --- environments and runs -------------------------------------------------------------------------

const createdEnvironments = new Set<string>();
const TERMINAL = ['SUCCEEDED', 'FAILED', 'CANCELED'];
const [SOURCE_IMAGE = '', SOURCE_TAG = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);

interface Env {
  id: string;
  host: string;
  serviceIds: string[];
}

async function environment(name: string, host: 'd1' | 'd2' | undefined, services: number): Promise<Env> {
  const { environment: e, pipeline } = await callUnary(
    environments,
    'createEnvironment',
    control.CreateEnvironmentRequest.fromPartial({
      project: 'multihost',
      name,
      runtime: 'local',
      settings: host === undefined ? {} : { deployHost: host },
    }),
  );
  createdEnvironments.add(e!.id);
  const serviceIds: string[] = [];
  for (let i = 0; i < services; i++) {
    const { service } = await callUnary(
      environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: e!.id,
        service: {
          name: `svc-${i}`,
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          // Two stages: a fault during the first must not keep the second from deploying.
          stageId: pipeline!.stages[i % 2 === 1 ? 3 : 2]!.id,
          source: { $case: 'container', value: { image: SOURCE_IMAGE, tag: SOURCE_TAG, ports: [] } },
          envVars: [
            { key: 'EXAMPLE_SCRIPT', value: 'sleep 2; exec /bin/busybox httpd -f -p 8080 -h /www', secret: false },
          ],
          readinessTimeoutSeconds: 120,
        },
      }),
    );
    serviceIds.push(service!.id);
  }
  return { id: e!.id, host: e!.settings?.deployHost ?? '', serviceIds };
}

async function getRun(id: string): Promise<control.Deployment> {
  return (await callUnary(deployments, 'getDeployment', { deploymentId: id }, { retry: { withinMs: 60_000 } }))
    .deployment!;
}

/** Waits until a deploy of the run is in flight (its step started, not finished): the moment to strike. */
async function untilDeploying(id: string): Promise<void> {
  for (let i = 0; i < 2400; i++) {
    const d = await getRun(id);
    const deploying = d.services.some((s) =>
      s.steps.some((st) => st.kind === control.StepKind.STEP_KIND_DEPLOYMENT && st.finishedAt === undefined),
    );
    if (deploying) return;
    await sleep(50);
  }
  throw new Error(`run ${id} never had a deploy in flight`);
}

async function untilEnd(id: string, timeoutMs = 300_000): Promise<control.Deployment> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = await getRun(id);
    if (TERMINAL.includes(runStatusName(d.status))) return d;
    if (Date.now() > deadline) throw new Error(`run ${id} did not finish: ${runStatusName(d.status)}`);
    await sleep(250);
  }
}

interface Row {
  fault: string;
  runs: string;
  seconds: string;
}
const table: Row[] = [];
let baselineSeconds: number | undefined;
const allRuns: string[] = [];

function printTable(): void {
  const header: Row = { fault: 'fault', runs: 'runs', seconds: 'seconds the fault cost' };
  const rows = [header, ...table];
  const w = (k: keyof Row) => Math.max(...rows.map((r) => r[k].length));
  const line = (r: Row) =>
    `| ${r.fault.padEnd(w('fault'))} | ${r.runs.padStart(w('runs'))} | ${r.seconds.padStart(w('seconds'))} |`;
  const rule = `| ${'-'.repeat(w('fault'))} | ${'-'.repeat(w('runs'))} | ${'-'.repeat(w('seconds'))} |`;
  console.log(['multi-host scenario:', line(header), rule, ...table.map(line)].join('\n'));
}

/**
 * One phase: three new environments (one on the podman host, two on the noop host), a run each, the
 * fault once the podman host's run is deploying; then what every fault must leave behind.
 */
async function phase(fault: string, inject?: () => Promise<void>): Promise<void> {
  const slug = fault
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 40);
  const envs = [
    await environment(`${slug}-podman`, 'd1', 2),
    await environment(`${slug}-noop-a`, 'd2', 3),
    await environment(`${slug}-noop-b`, 'd2', 3),
  ];
  const started = Date.now();
  const ids: string[] = [];
  for (const e of envs) {
    const { deployment } = await callUnary(deployments, 'deployEnvironment', {
      environmentId: e.id,
      requester: 'multihost',
      forceBuild: false,
      versions: {},
    });
    ids.push(deployment!.id);
  }
  allRuns.push(...ids);
  if (inject !== undefined) {
    await untilDeploying(ids[0]!);
    await inject();
  }
  const finals = await Promise.all(ids.map((id) => untilEnd(id)));
  const end = Math.max(...finals.map((f) => f.finishedAt?.getTime() ?? Date.now()));
  const seconds = (end - started) / 1000;
  if (inject === undefined) baselineSeconds = seconds;
  table.push({
    fault,
    runs: String(ids.length),
    seconds: inject === undefined ? `${seconds.toFixed(1)} (baseline)` : (seconds - (baselineSeconds ?? 0)).toFixed(1),
  });
  console.log(`multi-host figure: ${fault}: ${ids.length} runs in ${seconds.toFixed(1)} s`);

  // Runs complete.
  for (const [i, f] of finals.entries()) {
    expect(runStatusName(f.status), `${fault}: run of ${envs[i]!.host} (${f.message})`).toBe('SUCCEEDED');
    expect(f.services.map((s) => stateName(s.status))).toEqual(envs[i]!.serviceIds.map(() => 'DEPLOYED'));
  }
  // Every accepted request has a finished run.
  for (const e of envs) {
    const { deployments: runs } = await callUnary(deployments, 'listDeployments', {
      environmentId: e.id,
      pageSize: 500,
      pageToken: '',
    });
    expect(runs.map((d) => runStatusName(d.status)).filter((s) => !TERMINAL.includes(s))).toEqual([]);
  }
  // The podman host deployed each service of its environment exactly once in the run.
  const podmanEnv = envs[0]!;
  for (const serviceId of podmanEnv.serviceIds) {
    const { releases } = await callUnary(
      deployments,
      'listReleases',
      { environmentId: podmanEnv.id, serviceId },
      { retry: { withinMs: 60_000 } },
    );
    expect(
      releases.filter((r) => r.deploymentId === ids[0]).map((r) => r.status),
      `${fault}: releases of a service in the run`,
    ).toEqual(['DEPLOYED']);
  }
  // Host affinity: pods only for the podman host's environment; the noop host's got none (its worker
  // never ran on d1, d1's never took the noop host's jobs).
  const pods = (await run('podman', ['pod', 'ps', '--format', '{{.Labels}}'])).stdout;
  expect(pods.includes(podmanEnv.id), `${fault}: pods of the podman host's environment`).toBe(true);
  for (const e of envs.slice(1)) expect(pods.includes(e.id), `${fault}: pods of a noop host's environment`).toBe(false);
}

/** Every run event of the scenario, read from the R3 stream: per run, (sequence, event id, planner). */
async function runEvents(): Promise<Map<string, { sequence: number; eventId: string; planner: string }[]>> {
  const stream = admin!.subjects.streams.events;
  // One filter subject as a string: nats-server 2.9 knows no filter_subjects list.
  const consumer = await admin!.js.consumers.get(stream, { filter_subjects: admin!.subjects.filters.runEvents });
  const byRun = new Map<string, { sequence: number; eventId: string; planner: string }[]>();
  for (let done = false; !done; ) {
    const batch = await consumer.fetch({ max_messages: 500, expires: 5_000 });
    done = true;
    for await (const m of batch) {
      const e = busv1.DeploymentEvent.decode(m.data);
      const id = e.deployment?.id ?? '';
      const list = byRun.get(id) ?? [];
      list.push({ sequence: e.sequence, eventId: e.eventId, planner: e.planner });
      byRun.set(id, list);
      done = m.info.pending === 0;
      if (done) break;
    }
  }
  return byRun;
}

describe('several hosts: a three-node JetStream cluster, two planners, workers on separate hosts', () => {
  it('binds a local environment to a deploy host, the least used one when none is asked for', async () => {
    const chosen = await environment('unbound', undefined, 0);
    expect(['d1', 'd2']).toContain(chosen.host);
    const { environment: e } = await callUnary(environments, 'getEnvironment', { environmentId: chosen.id });
    expect(e?.settings?.deployHost).toBe(chosen.host);
    const other = chosen.host === 'd1' ? 'd2' : 'd1';
    await expect(
      callUnary(
        environments,
        'updateEnvironment',
        control.UpdateEnvironmentRequest.fromPartial({ environmentId: chosen.id, settings: { deployHost: other } }),
      ),
    ).rejects.toThrow(/deploy_host/);
    // A host without workers is refused, naming the field.
    await expect(environment('nowhere', 'd9' as 'd1', 0)).rejects.toThrow(/settings\.deploy_host: "d9" is not one of/);
  });

  it('runs with no fault (the baseline)', async () => {
    await phase('none (baseline)');
  }, 400_000);

  it('a NATS node cut off mid-run (its link down 10 s, then up)', async () => {
    await phase('NATS node n1 cut off 10 s', async () => {
      await ip('link', 'set', hostLink('n1'), 'down');
      await sleep(10_000);
      await ip('link', 'set', hostLink('n1'), 'up');
    });
  }, 400_000);

  it('a planner killed mid-run (kill -9), the other carrying on', async () => {
    await phase('planner p2 kill -9', async () => {
      await kill(live('planner', 'p2'));
    });
    // Two planners again for what follows.
    await spawnService('planner', 'p2', `${address('p2')}:50052`);
  }, 400_000);

  it("the podman host's deploy worker killed mid-run; its replacement, on an empty disk, finishes", async () => {
    await phase('deploy worker of d1 kill -9, replaced 2 s later', async () => {
      const doomed = live('deploy', 'd1');
      await kill(doomed);
      await sleep(2_000);
      // Same host name, a new state directory: charts and releases are in PostgreSQL.
      await spawnService('deploy', 'd1', doomed.address, deployEnv('d1'));
    });
  }, 400_000);

  it('advanced no run twice: every run event sequence is 1..n with each number made by exactly one planner', async () => {
    const byRun = await runEvents();
    const planners = new Set<string>();
    let handedOver = 0;
    for (const id of allRuns) {
      const events = byRun.get(id) ?? [];
      expect(events.length, `events of run ${id}`).toBeGreaterThan(0);
      const bySequence = new Map<number, Set<string>>();
      for (const e of events) {
        expect(e.planner, 'each event names its planner').not.toBe('');
        planners.add(e.planner);
        const ids = bySequence.get(e.sequence) ?? new Set<string>();
        ids.add(`${e.eventId}|${e.planner}`);
        bySequence.set(e.sequence, ids);
      }
      const max = Math.max(...bySequence.keys());
      // No gap, no duplicate: 1..n, one event (one planner) each. A republished copy is the same event.
      expect([...bySequence.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: max }, (_, i) => i + 1));
      for (const [sequence, made] of bySequence) expect(made.size, `run ${id} event ${sequence}`).toBe(1);
      if (new Set(events.map((e) => e.planner)).size > 1) handedOver++;
    }
    // Both planners did work (and the restarted one).
    expect(planners.size).toBeGreaterThanOrEqual(2);
    console.log(
      `multi-host events: ${allRuns.length} runs, ${planners.size} planner processes, ${handedOver} runs advanced by more than one planner in turn, no sequence made twice`,
    );
  }, 120_000);
});
