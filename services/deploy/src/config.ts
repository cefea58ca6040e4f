// The deploy service's whole configuration: read once from the environment, validated, then passed down.
import path from 'node:path';
import { KUBE_CONTEXTS_VARIABLE, parseKubeContexts } from '@stageline/policy';
import {
  type CommonConfig,
  ConfigError,
  commonConfig,
  type Env,
  envReader,
  integer,
  registryHost,
  url,
} from '@stageline/service';

export { ConfigError } from '@stageline/service';

export interface DeployConfig extends CommonConfig {
  /**
   * `DEPLOY_HOST`: the host this worker deploys `local` environments on (a DNS label). Set: it also takes
   * the jobs of the environments bound to this host (settings.deploy_host). Unset: only unbound jobs.
   */
  deployHost?: string | undefined;
  /** Local state: chart directories under `charts/`, podman kube play inputs under `local/`. Absolute. */
  stateDir: string;
  /** Deploy jobs this process runs at once (default 7): every process adds its own slots. */
  slots: number;
  /** How long a job may go without a heartbeat before JetStream hands it to another worker. */
  workerAckWaitMs: number;
  /** On SIGTERM, how long jobs in flight may finish before they are handed back to another worker. */
  workerDrainGraceMs: number;
  /** Binaries of the runtimes (looked up on PATH unless absolute). */
  podman: string;
  helm: string;
  kubectl: string;
  git: string;
  /**
   * MANAGED databases: the server they are created on and where workloads reach it — `host`/`port` from
   * the local runtime's containers, `kubernetes` from a cluster's pods (undefined: not configured, a
   * managed database of a kubernetes environment fails saying so); undefined when none is configured.
   */
  managedPostgres:
    | { adminUrl: string; host: string; port: number; kubernetes: { host: string; port: number } | undefined }
    | undefined;
  /**
   * The mirror as the `kubernetes` runtime's clusters see it: `push` is the address deploy jobs name
   * (MIRROR_REGISTRY, the build service's); `pull` the address each kube context's nodes pull from ('' key:
   * every other context); `credentialsFile` a JSON file {"username","password"} when the mirror needs them.
   */
  kubeMirror: { push: string; pull: Record<string, string>; credentialsFile: string | undefined };
  /** Whether this process runs the local runtime's cron schedules (every process may: ticks are claimed). */
  cron: boolean;
  /** How often the scheduler looks for due ticks. */
  cronPollMs: number;
  /** How often the running status reads every runtime again (podman events refresh it sooner on local). */
  runtimePollMs: number;
  /** Tests only: a file holding the schedule clock's time (ISO 8601 or epoch ms); absent: the real clock. */
  cronClockFile: string | undefined;
  /** The kube contexts environments may name (STAGELINE_KUBE_CONTEXTS, as control reads it); empty: none. */
  kubeContexts: string[];
}

const DEFAULTS = {
  // env.sh sets it to <repo>/.stageline; a bare process keeps its state next to where it runs.
  STAGELINE_STATE: '.stageline',
  DEPLOY_SLOTS: '7',
  // A dead worker's job moves on within 6 s; heartbeats every 2 s keep a live one's (packages/bus).
  WORKER_ACK_WAIT_MS: '6000',
  // Below stack.sh's 10 s before SIGKILL: what does not finish by then is handed back, never lost.
  WORKER_DRAIN_GRACE_MS: '8000',
  PODMAN: 'podman',
  HELM: 'helm',
  KUBECTL: 'kubectl',
  GIT: 'git',
  MANAGED_POSTGRES_URL: '',
  // Where workloads reach a server on the host (podman's name for the network gateway).
  MANAGED_POSTGRES_HOST: 'host.containers.internal',
  MANAGED_POSTGRES_PORT: '',
  // Where a cluster's pods reach that server: an in-cluster Service's DNS name, typically. Unset: nowhere.
  MANAGED_POSTGRES_KUBE_HOST: '',
  MANAGED_POSTGRES_KUBE_PORT: '',
  // The mirror's push address (as the build service pushes, and deploy jobs name images).
  MIRROR_REGISTRY: '127.0.0.1:5000',
  // Where clusters pull the mirror from: `host[:port]` for every context, `<context>=host[:port]` for one.
  KUBE_MIRROR_PULL: '',
  KUBE_MIRROR_CREDENTIALS: '',
  DEPLOY_CRON: 'true',
  DEPLOY_CRON_POLL_MS: '5000',
  DEPLOY_CRON_CLOCK_FILE: '',
  DEPLOY_RUNTIME_POLL_MS: '5000',
  [KUBE_CONTEXTS_VARIABLE]: '',
} as const;

function deployHostConfig(value: string | undefined): { deployHost?: string } {
  const host = value?.trim() ?? '';
  if (host === '') return {};
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(host)) {
    throw new ConfigError('DEPLOY_HOST', `a DNS label (lowercase letters, digits and "-", at most 63), got "${host}"`);
  }
  return { deployHost: host };
}

/** Throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env): DeployConfig {
  const read = envReader(env, DEFAULTS);
  const common = commonConfig(env, '127.0.0.1:50054', 'deploy');
  const slots = integer('DEPLOY_SLOTS', read('DEPLOY_SLOTS'), 1, 64);
  const ackWait = integer('WORKER_ACK_WAIT_MS', read('WORKER_ACK_WAIT_MS'), 1000, 3_600_000);
  const binaries = {
    podman: read('PODMAN'),
    helm: read('HELM'),
    kubectl: read('KUBECTL'),
    git: read('GIT'),
  };
  for (const [name, value] of Object.entries(binaries)) {
    if (/\s/.test(value)) throw new ConfigError(name.toUpperCase(), `a program path, got "${value}"`);
  }
  let managedPostgres: DeployConfig['managedPostgres'];
  const managedUrl = read('MANAGED_POSTGRES_URL');
  if (managedUrl !== '') {
    const parsed = new URL(url('MANAGED_POSTGRES_URL', managedUrl, ['postgres:', 'postgresql:']));
    const portText = read('MANAGED_POSTGRES_PORT') || parsed.port || '5432';
    const port = Number(portText);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new ConfigError('MANAGED_POSTGRES_PORT', `a port 1..65535, got "${portText}"`);
    }
    const host = read('MANAGED_POSTGRES_HOST');
    if (!/^[A-Za-z0-9.-]+$|^\[[0-9a-fA-F:]+\]$/.test(host)) {
      throw new ConfigError('MANAGED_POSTGRES_HOST', `a host name or address, got "${host}"`);
    }
    const kubeHost = read('MANAGED_POSTGRES_KUBE_HOST');
    let kubernetes: { host: string; port: number } | undefined;
    if (kubeHost !== '') {
      if (!/^[A-Za-z0-9.-]+$|^\[[0-9a-fA-F:]+\]$/.test(kubeHost)) {
        throw new ConfigError('MANAGED_POSTGRES_KUBE_HOST', `a host name or address, got "${kubeHost}"`);
      }
      const kubePortText = read('MANAGED_POSTGRES_KUBE_PORT') || String(port);
      kubernetes = { host: kubeHost, port: integer('MANAGED_POSTGRES_KUBE_PORT', kubePortText, 1, 65535) };
    }
    managedPostgres = { adminUrl: managedUrl, host, port, kubernetes };
  }
  const cron = read('DEPLOY_CRON');
  if (cron !== 'true' && cron !== 'false') throw new ConfigError('DEPLOY_CRON', `true or false, got "${cron}"`);
  const cronPollMs = integer('DEPLOY_CRON_POLL_MS', read('DEPLOY_CRON_POLL_MS'), 50, 60_000);
  const clockFile = read('DEPLOY_CRON_CLOCK_FILE');
  let kubeContexts: string[];
  try {
    kubeContexts = parseKubeContexts(read(KUBE_CONTEXTS_VARIABLE));
  } catch (e) {
    throw new ConfigError(KUBE_CONTEXTS_VARIABLE, e instanceof Error ? e.message : String(e));
  }
  return {
    kubeContexts,
    kubeMirror: kubeMirrorConfig(read('MIRROR_REGISTRY'), read('KUBE_MIRROR_PULL'), read('KUBE_MIRROR_CREDENTIALS')),
    managedPostgres,
    cron: cron === 'true',
    cronPollMs,
    runtimePollMs: integer('DEPLOY_RUNTIME_POLL_MS', read('DEPLOY_RUNTIME_POLL_MS'), 200, 600_000),
    cronClockFile: clockFile === '' ? undefined : path.resolve(clockFile),
    ...deployHostConfig(env.DEPLOY_HOST),
    ...common,
    stateDir: path.resolve(read('STAGELINE_STATE')),
    slots,
    workerAckWaitMs: ackWait,
    workerDrainGraceMs: integer('WORKER_DRAIN_GRACE_MS', read('WORKER_DRAIN_GRACE_MS'), 0, 3_600_000),
    ...binaries,
  };
}

function kubeMirrorConfig(pushText: string, pullText: string, credentials: string): DeployConfig['kubeMirror'] {
  const push = registryHost('MIRROR_REGISTRY', pushText);
  const pull: Record<string, string> = { '': push };
  for (const entry of pullText
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '')) {
    const eq = entry.indexOf('=');
    const context = eq === -1 ? '' : entry.slice(0, eq).trim();
    if (eq !== -1 && context === '') throw new ConfigError('KUBE_MIRROR_PULL', `"${entry}" names no context`);
    pull[context] = registryHost('KUBE_MIRROR_PULL', entry.slice(eq + 1).trim());
  }
  if (credentials !== '' && !path.isAbsolute(credentials)) {
    throw new ConfigError('KUBE_MIRROR_CREDENTIALS', `an absolute path of a JSON file, got "${credentials}"`);
  }
  return { push, pull, credentialsFile: credentials === '' ? undefined : credentials };
}
