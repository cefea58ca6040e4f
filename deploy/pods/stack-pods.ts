// Stageline in pods on this machine, from its own images and Kubernetes manifests (`npm run stack:pods`):
//
//   node deploy/pods/stack-pods.ts up        render deploy/kubernetes/overlays/local-pods with this machine's
//                                            images and credentials, translate it (translate.ts), run the
//                                            provisioning Job, then the four services; wait until each is ready
//   node deploy/pods/stack-pods.ts example   apply and deploy the example environment with the CLI image,
//                                            then ask its public service
//   node deploy/pods/stack-pods.ts delete-example   delete the example environment through the pods
//   node deploy/pods/stack-pods.ts down      remove the pods and stop the podman service the deploy pod uses
//
// Inputs: $STAGELINE_STATE/images.env (`npm run images` writes it), the credentials set-up made under
// $STAGELINE_STATE (tls/, nats/users/, keys/, admin.token), Stageline's NATS (NATS_URL, default
// nats://127.0.0.1:$STAGELINE_NATS_PORT), DATABASE_URL (default the machine's PostgreSQL, database stageline_pods)
// and MANAGED_POSTGRES_URL. Everything it writes is under $STAGELINE_STATE/pods (secrets 0600 or as the
// manifests set). The pods share the host's network: gRPC on 127.0.0.1:31051-31054, health 31151-31154.
import { execFile, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments, stringify } from 'yaml';
import { type Manifest, type PodPlan, type PodsPlan, translate } from './translate.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const STATE = path.resolve(process.env.STAGELINE_STATE ?? path.join(ROOT, '.stageline'));
const DIR = path.join(STATE, 'pods');
const OVERLAY = path.join(ROOT, 'deploy/kubernetes/overlays/local-pods');
const SOCKET_DIR = path.join(DIR, 'podman');
const POD_PREFIX = 'stageline-';
const TARGETS = ['control', 'planner', 'build', 'deploy'] as const;
const SERVICES_FOR_IDENTITY = ['control', 'planner', 'build', 'deploy', 'provision'] as const;
const CONTROL_ADDRESS = '127.0.0.1:31051';
// A database of its own on the machine's PostgreSQL: what the one-machine stack stored there was sealed
// under that stack's keys (and other checkouts on the machine share its database).
const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/stageline_pods';
const READY_TIMEOUT_MS = 180_000;
const JOB_TIMEOUT_MS = 120_000;

const log = (line: string): void => {
  process.stderr.write(`stack:pods: ${line}\n`);
};

class StackError extends Error {}

async function podman(args: string[], options: { allowFail?: boolean } = {}): Promise<string> {
  try {
    const { stdout } = await run('podman', args, { maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    if (options.allowFail) return '';
    const err = e as { stderr?: string; message: string };
    throw new StackError(`podman ${args.slice(0, 3).join(' ')}: ${(err.stderr ?? err.message).trim()}`);
  }
}

/** KEY=value lines of $STAGELINE_STATE/images.env. */
function images(): Record<string, string> {
  const file = path.join(STATE, 'images.env');
  if (!existsSync(file)) throw new StackError(`${file} is missing: run npm run images first`);
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^STAGELINE_IMAGE_([A-Z]+)=(.+)$/.exec(line.trim());
    if (match?.[1] !== undefined && match[2] !== undefined) out[match[1].toLowerCase()] = match[2];
  }
  for (const target of [...TARGETS, 'cli']) {
    if (out[target] === undefined) throw new StackError(`${file} names no ${target} image: run npm run images`);
  }
  return out;
}

const natsUrl = (): string =>
  process.env.NATS_URL?.trim() || `nats://127.0.0.1:${process.env.STAGELINE_NATS_PORT?.trim() || '4223'}`;

/** The kustomization on top of the local-pods overlay: this machine's image tags, Secrets and paths. */
function machineKustomization(refs: Record<string, string>, deployState: string): string {
  const file = (...parts: string[]): string => path.join(STATE, ...parts);
  const need = (p: string): string => {
    if (!existsSync(p)) throw new StackError(`${p} is missing: run bash deploy/dev/setup.sh`);
    return p;
  };
  const keysDir = need(file('keys'));
  const keyFiles = readdirSync(keysDir).filter((f) => f === 'active' || f.endsWith('.key'));
  const secret = (name: string, entries: Record<string, string>, literal = false): object => ({
    name,
    [literal ? 'literals' : 'files']: Object.entries(entries).map(([k, v]) => `${k}=${literal ? v : need(v)}`),
  });
  const secrets = [
    secret('stageline-database', { url: process.env.DATABASE_URL?.trim() || DEFAULT_DATABASE_URL }, true),
    ...TARGETS.map((s) =>
      secret(`stageline-${s}-tls`, {
        'ca.pem': file('tls', 'ca.pem'),
        [`${s}.pem`]: file('tls', `${s}.pem`),
        [`${s}-key.pem`]: file('tls', `${s}-key.pem`),
      }),
    ),
    ...SERVICES_FOR_IDENTITY.map((s) =>
      secret(`stageline-${s}-nats`, { 'credentials.json': file('nats', 'users', `${s}.json`) }),
    ),
    secret('stageline-secret-keys', Object.fromEntries(keyFiles.map((f) => [f, path.join(keysDir, f)]))),
    secret('stageline-admin-token', { 'admin.token': file('admin.token') }),
  ];
  const managed = process.env.MANAGED_POSTGRES_URL?.trim();
  if (managed) secrets.push(secret('stageline-managed-postgres', { url: managed }, true));
  const kustomization = {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    resources: [path.relative(path.join(DIR, 'kustomize'), OVERLAY)],
    images: [...TARGETS].map((t) => {
      const ref = refs[t] ?? '';
      const colon = ref.lastIndexOf(':');
      return { name: `127.0.0.1:5000/stageline/${t}`, newName: ref.slice(0, colon), newTag: ref.slice(colon + 1) };
    }),
    generatorOptions: { disableNameSuffixHash: true },
    secretGenerator: secrets,
    patches: [
      {
        patch: stringify({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'stageline-config' },
          data: { NATS_URL: natsUrl(), STAGELINE_SOURCE_ALLOW: process.env.STAGELINE_SOURCE_ALLOW ?? '' },
        }),
      },
      {
        // The podman service's socket, and a state directory at the same path on both sides: the pods
        // the deploy worker starts mount its job output directories from the host.
        patch: stringify({
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: 'deploy' },
          spec: {
            template: {
              spec: {
                containers: [
                  {
                    name: 'deploy',
                    env: [{ name: 'STAGELINE_STATE', value: deployState }],
                    volumeMounts: [{ name: 'host-state', mountPath: deployState }],
                  },
                ],
                volumes: [
                  { name: 'podman', hostPath: { path: SOCKET_DIR, type: 'Directory' } },
                  { name: 'host-state', hostPath: { path: deployState, type: 'Directory' } },
                ],
              },
            },
          },
        }),
      },
    ],
  };
  return stringify(kustomization);
}

async function render(refs: Record<string, string>, deployState: string): Promise<Manifest[]> {
  const dir = path.join(DIR, 'kustomize');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(path.join(dir, 'kustomization.yaml'), machineKustomization(refs, deployState), { mode: 0o600 });
  let rendered: string;
  try {
    ({ stdout: rendered } = await run('kubectl', ['kustomize', '--load-restrictor', 'LoadRestrictionsNone', dir], {
      maxBuffer: 64 * 1024 * 1024,
    }));
  } catch (e) {
    throw new StackError(`kubectl kustomize ${dir}: ${((e as { stderr?: string }).stderr ?? String(e)).trim()}`);
  }
  writeFileSync(path.join(DIR, 'rendered.yaml'), rendered, { mode: 0o600 });
  return parseAllDocuments(rendered)
    .map((d) => d.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

function writeDirs(plan: PodsPlan): void {
  rmSync(path.join(DIR, 'volumes'), { recursive: true, force: true });
  for (const dir of plan.dirs) {
    mkdirSync(dir.path, { recursive: true });
    chmodSync(dir.path, dir.mode);
    chownSync(dir.path, dir.uid, dir.gid);
    for (const f of dir.files) {
      const target = path.join(dir.path, f.name);
      mkdirSync(path.dirname(target), { recursive: true });
      writeFileSync(target, f.content, { mode: f.mode });
      chmodSync(target, f.mode);
      chownSync(target, dir.uid, dir.gid);
    }
  }
}

const portOpen = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `podman system service` on a socket of our own: the deploy pod's podman talks to the host's through it. */
async function podmanService(): Promise<void> {
  mkdirSync(SOCKET_DIR, { recursive: true, mode: 0o700 });
  const socket = path.join(SOCKET_DIR, 'podman.sock');
  const pidFile = path.join(DIR, 'podman-service.pid');
  const running = existsSync(pidFile) && existsSync(`/proc/${readFileSync(pidFile, 'utf8').trim()}`);
  if (running && existsSync(socket)) return;
  rmSync(socket, { force: true });
  const out = path.join(DIR, 'podman-service.log');
  const child = spawn('podman', ['system', 'service', '--time=0', `unix://${socket}`], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore'],
    env: process.env,
  });
  child.unref();
  writeFileSync(pidFile, `${child.pid}\n`);
  for (let i = 0; i < 100 && !existsSync(socket); i++) await sleep(100);
  if (!existsSync(socket)) throw new StackError(`the podman service did not open ${socket} (see ${out})`);
  log(`podman service on ${socket} (pid ${child.pid})`);
}

async function logsOf(pod: PodPlan): Promise<string> {
  const parts = await Promise.all(
    pod.containers.map(async (c) => {
      const text = await podman(['logs', '--tail', '30', c], { allowFail: true });
      return `--- ${c}\n${text}`;
    }),
  );
  return parts.join('\n');
}

async function play(pod: PodPlan): Promise<void> {
  const file = path.join(DIR, 'play', `${pod.name}.yaml`);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, pod.yaml, { mode: 0o600 });
  await podman(['pod', 'rm', '--force', '--ignore', pod.name]);
  await podman(['kube', 'play', '--start=true', file]);
}

async function runJob(pod: PodPlan): Promise<void> {
  await play(pod);
  const main = pod.containers.at(-1) ?? '';
  const started = Date.now();
  for (;;) {
    const state = (await podman(['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', main])).trim();
    const [status, code] = state.split(' ');
    if (status === 'exited' || status === 'stopped') {
      const logs = await logsOf(pod);
      if (code !== '0') throw new StackError(`${pod.source} failed (exit ${code}):\n${logs}`);
      // Its last plain line (JSON lines are a service logger's).
      const plain = logs.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('---') && !l.startsWith('{'));
      log(`${pod.source}: ${plain.at(-1) ?? 'done'}`);
      await podman(['pod', 'rm', '--force', pod.name]);
      return;
    }
    if (Date.now() - started > JOB_TIMEOUT_MS)
      throw new StackError(`${pod.source} did not finish in ${JOB_TIMEOUT_MS / 1000} s:\n${await logsOf(pod)}`);
    await sleep(500);
  }
}

async function waitReady(pod: PodPlan): Promise<void> {
  if (pod.readiness === undefined) return;
  const started = Date.now();
  let last = '';
  while (Date.now() - started < READY_TIMEOUT_MS) {
    try {
      const res = await fetch(pod.readiness, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return;
      last = `${res.status} ${(await res.text()).trim()}`;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    await sleep(500);
  }
  throw new StackError(`${pod.source} not ready at ${pod.readiness} (${last}):\n${await logsOf(pod)}`);
}

async function up(): Promise<void> {
  for (const name of TARGETS) {
    const pidFile = path.join(STATE, 'run', `${name}.pid`);
    const pid = existsSync(pidFile) ? readFileSync(pidFile, 'utf8').trim() : '';
    if (pid !== '' && existsSync(`/proc/${pid}`)) {
      throw new StackError(
        `the one-machine stack is running (${name}, pid ${pid}): npm run stack:down first (both use one bus)`,
      );
    }
  }
  const refs = images();
  const deployState = path.join(DIR, 'deploy-state');
  mkdirSync(deployState, { recursive: true, mode: 0o700 });
  const manifests = await render(refs, deployState);
  const plan = translate(manifests, { volumeRoot: path.join(DIR, 'volumes'), podPrefix: POD_PREFIX });
  for (const line of plan.ignored) log(`ignored ${line}`);
  await down({ keepService: true });
  for (const port of [31051, 31052, 31053, 31054, 31151, 31152, 31153, 31154]) {
    if (await portOpen(port)) throw new StackError(`127.0.0.1:${port} is taken by another process`);
  }
  writeDirs(plan);
  await podmanService();
  for (const job of plan.jobs) {
    for (const init of job.init) await runJob(init);
    await runJob(job);
  }
  for (const pod of plan.workloads) {
    for (const init of pod.init) await runJob(init);
    await play(pod);
  }
  for (const pod of plan.workloads) {
    await waitReady(pod);
    log(`${pod.source}: ready (${pod.readiness ?? 'no readiness probe'})`);
  }
  for (const line of plan.services) log(line);
  writeFileSync(path.join(DIR, 'pods'), `${plan.workloads.map((p) => p.name).join('\n')}\n`);
  log(`Stageline is up in pods: control at ${CONTROL_ADDRESS}; npm run stack:pods -- down removes them`);
}

async function down(options: { keepService?: boolean } = {}): Promise<void> {
  const listed = await podman(['pod', 'ps', '--format', '{{.Name}}', '--filter', `name=^${POD_PREFIX}`], {
    allowFail: true,
  });
  const ours = new Set(['provision', ...TARGETS].map((n) => `${POD_PREFIX}${n}`));
  for (const name of listed.split('\n').filter((n) => ours.has(n))) {
    // SIGTERM first: the workers hand their jobs back (WORKER_DRAIN_GRACE_MS) before the pod goes.
    await podman(['pod', 'stop', '--time', '15', name], { allowFail: true });
    await podman(['pod', 'rm', '--force', name], { allowFail: true });
    log(`removed pod ${name}`);
  }
  if (options.keepService) return;
  const pidFile = path.join(DIR, 'podman-service.pid');
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`)) {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.includes(SOCKET_DIR)) process.kill(pid, 'SIGTERM');
    }
    rmSync(pidFile, { force: true });
  }
}

/** The `stageline` command from the CLI image, against the pods' control, as the first admin. */
function cliOfImage(): (args: string[]) => Promise<string> {
  const refs = images();
  const token = readFileSync(path.join(STATE, 'admin.token'), 'utf8').trim();
  return async (args: string[]): Promise<string> => {
    const full = [
      'run',
      '--rm',
      '--network',
      'host',
      '--volume',
      `${path.join(STATE, 'tls', 'ca.pem')}:/etc/stageline/ca.pem:ro`,
      '--volume',
      `${path.join(ROOT, 'deploy/examples')}:/examples:ro`,
      '--env',
      `STAGELINE_ADDRESS=${CONTROL_ADDRESS}`,
      '--env',
      'STAGELINE_CA=/etc/stageline/ca.pem',
      // By name only: the value comes from this process's environment, never a command line.
      '--env',
      'STAGELINE_TOKEN',
      refs.cli ?? '',
      ...args,
    ];
    try {
      const { stdout } = await run('podman', full, {
        env: { ...process.env, STAGELINE_TOKEN: token },
        maxBuffer: 64 * 1024 * 1024,
      });
      return stdout;
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string };
      throw new StackError(`stageline ${args.join(' ')}:\n${err.stdout ?? ''}${err.stderr ?? String(e)}`);
    }
  };
}

/** The example environment, applied and deployed through the pods with the CLI image; then its public endpoint. */
async function example(): Promise<void> {
  const cli = cliOfImage();
  log('$ stageline apply -f deploy/examples/demo-staging.yaml');
  process.stdout.write(await cli(['apply', '-f', '/examples/demo-staging.yaml']));
  log('$ stageline deploy demo/staging --watch');
  process.stdout.write(await cli(['deploy', 'demo/staging', '--watch']));
  const history = JSON.parse(await cli(['history', 'demo/staging', '--limit', '1', '-o', 'json'])) as {
    deployments: { status?: string; services: { endpoints?: { url: string }[] }[] }[];
  };
  const url = history.deployments[0]?.services
    .flatMap((s) => s.endpoints ?? [])
    .find((e) => e.url.startsWith('http'))?.url;
  if (url === undefined) throw new StackError('the example run reports no public endpoint');
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const body = (await res.text()).trim();
  if (!res.ok) throw new StackError(`${url} answered ${res.status}: ${body}`);
  log(`$ curl ${url}`);
  process.stdout.write(`${body}\n`);
}

/** The example environment deleted through the pods: its workloads and its database go. */
async function deleteExample(): Promise<void> {
  log('$ stageline delete demo/staging --yes --watch');
  process.stdout.write(await cliOfImage()(['delete', 'demo/staging', '--yes', '--watch']));
}

const command = process.argv[2];
try {
  if (command === 'up') await up();
  else if (command === 'delete-example') await deleteExample();
  else if (command === 'down') await down();
  else if (command === 'example') await example();
  else {
    console.error('usage: node deploy/pods/stack-pods.ts up|example|delete-example|down');
    process.exit(2);
  }
} catch (e) {
  log(e instanceof Error ? e.message : String(e));
  process.exit(1);
}
