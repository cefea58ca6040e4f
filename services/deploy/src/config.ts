// The deploy service's whole configuration: read once from the environment, validated, then passed down.
import path from 'node:path';
import { busPrefixFromEnv } from '@stageline/bus';

export interface DeployConfig {
  /** host:port the gRPC server binds (port 0: any free port). */
  grpcListen: string;
  natsUrl: string;
  databaseUrl: string;
  /** Prefix of every subject, stream and durable (DESIGN.md §6), so installations can share a NATS server. */
  busPrefix: string;
  logLevel: string;
  /** Local state: chart directories under `charts/`, podman kube play inputs under `local/`. Absolute. */
  stateDir: string;
  /** Deploy jobs this process runs at once (DESIGN.md §2: 7). */
  slots: number;
  /** How long a job may go without a heartbeat before JetStream hands it to another worker. */
  workerAckWaitMs: number;
  /** Binaries of the runtimes (looked up on PATH unless absolute). */
  podman: string;
  helm: string;
  kubectl: string;
  git: string;
  /** MANAGED databases: the server they are created on; undefined when none is configured. */
  managedPostgres: { adminUrl: string; host: string; port: number } | undefined;
  /** Whether this process runs the local runtime's cron schedules (every process may: ticks are claimed). */
  cron: boolean;
  /** How often the scheduler looks for due ticks. */
  cronPollMs: number;
  /** Tests only: a file holding the schedule clock's time (ISO 8601 or epoch ms); absent: the real clock. */
  cronClockFile: string | undefined;
}

const DEFAULTS = {
  GRPC_LISTEN: '127.0.0.1:50054',
  NATS_URL: 'nats://127.0.0.1:4222',
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/stageline',
  STAGELINE_BUS_PREFIX: 'stageline',
  LOG_LEVEL: 'info',
  // env.sh sets it to <repo>/.stageline; a bare process keeps its state next to where it runs.
  STAGELINE_STATE: '.stageline',
  DEPLOY_SLOTS: '7',
  WORKER_ACK_WAIT_MS: '60000',
  PODMAN: 'podman',
  HELM: 'helm',
  KUBECTL: 'kubectl',
  GIT: 'git',
  MANAGED_POSTGRES_URL: '',
  // Where workloads reach a server on the host (podman's name for the network gateway, DESIGN.md §4).
  MANAGED_POSTGRES_HOST: 'host.containers.internal',
  MANAGED_POSTGRES_PORT: '',
  DEPLOY_CRON: 'true',
  DEPLOY_CRON_POLL_MS: '5000',
  DEPLOY_CRON_CLOCK_FILE: '',
} as const;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

type Env = Readonly<Record<string, string | undefined>>;

function read(env: Env, name: keyof typeof DEFAULTS): string {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? DEFAULTS[name] : value;
}

function hostPort(name: string, value: string): string {
  const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || port > 65535) throw new ConfigError(name, `expected host:port (e.g. 127.0.0.1:50054), got "${value}"`);
  return value;
}

function url(name: string, value: string, protocols: readonly string[]): string {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    // Never echo the value: a database URL may carry a password.
    throw new ConfigError(name, 'not a valid URL');
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `expected a ${protocols.join(' or ')} URL, got "${parsed.protocol}"`);
  }
  return value;
}

/** Throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env): DeployConfig {
  let busPrefix: string;
  try {
    // The bus's own rule for prefixes, so the two can never disagree.
    busPrefix = busPrefixFromEnv({ STAGELINE_BUS_PREFIX: read(env, 'STAGELINE_BUS_PREFIX') });
  } catch (e) {
    const message = e instanceof Error ? e.message.replace(/^STAGELINE_BUS_PREFIX: /, '') : String(e);
    throw new ConfigError('STAGELINE_BUS_PREFIX', message);
  }
  const logLevel = read(env, 'LOG_LEVEL');
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  }
  const slots = Number(read(env, 'DEPLOY_SLOTS'));
  if (!Number.isInteger(slots) || slots < 1 || slots > 64) {
    throw new ConfigError('DEPLOY_SLOTS', `an integer 1..64, got "${read(env, 'DEPLOY_SLOTS')}"`);
  }
  const ackWait = Number(read(env, 'WORKER_ACK_WAIT_MS'));
  if (!Number.isInteger(ackWait) || ackWait < 1000 || ackWait > 3_600_000) {
    throw new ConfigError('WORKER_ACK_WAIT_MS', `milliseconds 1000..3600000, got "${read(env, 'WORKER_ACK_WAIT_MS')}"`);
  }
  const binaries = {
    podman: read(env, 'PODMAN'),
    helm: read(env, 'HELM'),
    kubectl: read(env, 'KUBECTL'),
    git: read(env, 'GIT'),
  };
  for (const [name, value] of Object.entries(binaries)) {
    if (/\s/.test(value)) throw new ConfigError(name.toUpperCase(), `a program path, got "${value}"`);
  }
  let managedPostgres: DeployConfig['managedPostgres'];
  const managedUrl = read(env, 'MANAGED_POSTGRES_URL');
  if (managedUrl !== '') {
    const parsed = new URL(url('MANAGED_POSTGRES_URL', managedUrl, ['postgres:', 'postgresql:']));
    const portText = read(env, 'MANAGED_POSTGRES_PORT') || parsed.port || '5432';
    const port = Number(portText);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new ConfigError('MANAGED_POSTGRES_PORT', `a port 1..65535, got "${portText}"`);
    }
    const host = read(env, 'MANAGED_POSTGRES_HOST');
    if (!/^[A-Za-z0-9.-]+$|^\[[0-9a-fA-F:]+\]$/.test(host)) {
      throw new ConfigError('MANAGED_POSTGRES_HOST', `a host name or address, got "${host}"`);
    }
    managedPostgres = { adminUrl: managedUrl, host, port };
  }
  const cron = read(env, 'DEPLOY_CRON');
  if (cron !== 'true' && cron !== 'false') throw new ConfigError('DEPLOY_CRON', `true or false, got "${cron}"`);
  const cronPollMs = Number(read(env, 'DEPLOY_CRON_POLL_MS'));
  if (!Number.isInteger(cronPollMs) || cronPollMs < 50 || cronPollMs > 60_000) {
    throw new ConfigError('DEPLOY_CRON_POLL_MS', `milliseconds 50..60000, got "${read(env, 'DEPLOY_CRON_POLL_MS')}"`);
  }
  const clockFile = read(env, 'DEPLOY_CRON_CLOCK_FILE');
  return {
    managedPostgres,
    cron: cron === 'true',
    cronPollMs,
    cronClockFile: clockFile === '' ? undefined : path.resolve(clockFile),
    grpcListen: hostPort('GRPC_LISTEN', read(env, 'GRPC_LISTEN')),
    natsUrl: url('NATS_URL', read(env, 'NATS_URL'), ['nats:', 'tls:']),
    databaseUrl: url('DATABASE_URL', read(env, 'DATABASE_URL'), ['postgres:', 'postgresql:']),
    busPrefix,
    logLevel,
    stateDir: path.resolve(read(env, 'STAGELINE_STATE')),
    slots,
    workerAckWaitMs: ackWait,
    ...binaries,
  };
}
