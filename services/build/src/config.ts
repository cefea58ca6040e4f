// The build service's whole configuration: read once from the environment, validated, then passed down.
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { busPrefixFromEnv } from '@stageline/bus';

export interface BuildConfig {
  /** host:port the gRPC server binds (port 0: any free port). */
  grpcListen: string;
  natsUrl: string;
  databaseUrl: string;
  /** Prefix of every subject, stream and durable (DESIGN.md §6), so installations can share a NATS server. */
  busPrefix: string;
  logLevel: string;
  /** host:port of the mirror registry every mirrored and built image goes to (DESIGN.md §3). */
  mirrorRegistry: string;
  /**
   * Registries spoken to in plain HTTP besides loopback ones (the mirror on 127.0.0.1 already is),
   * as registries.conf `insecure = true`. Never anything on the internet.
   */
  insecureRegistries: string[];
  /** A containers-auth.json / docker config.json with `auths` for private registries, if any. */
  registryAuthFile: string | undefined;
  /** How long a job may go without a heartbeat before JetStream hands it to another worker. */
  workerAckWaitMs: number;
  /** Scratch space for clones (one directory per job, removed after it). */
  workDir: string;
  /** JSON file of git credentials by URL prefix (adapters/git/credentials.ts); none by default. */
  gitCredentialsFile: string | undefined;
  /** The ssh program git uses for ssh:// and user@host:path URLs. */
  gitSshProgram: string;
  /** Lease of a build's cross-process lock: a crashed holder blocks identical builds this long at most. */
  buildLockTtlMs: number;
}

const DEFAULTS = {
  GRPC_LISTEN: '127.0.0.1:50053',
  NATS_URL: 'nats://127.0.0.1:4222',
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/stageline',
  STAGELINE_BUS_PREFIX: 'stageline',
  LOG_LEVEL: 'info',
  MIRROR_REGISTRY: '127.0.0.1:5000',
  REGISTRY_INSECURE_HOSTS: '',
  REGISTRY_AUTH_FILE: '',
  WORKER_ACK_WAIT_MS: '60000',
  BUILD_WORK_DIR: '',
  GIT_CREDENTIALS_FILE: '',
  GIT_SSH_PROGRAM: 'ssh',
  BUILD_LOCK_TTL_MS: '30000',
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
  if (!match || port > 65535) throw new ConfigError(name, `expected host:port (e.g. 127.0.0.1:50053), got "${value}"`);
  return value;
}

/** A registry as image references name it: host or host:port, no scheme, no path. */
function registryHost(name: string, value: string): string {
  const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::(\d{1,5}))?$/.exec(value);
  if (!match || Number(match[2] ?? '0') > 65535) {
    throw new ConfigError(name, `expected a registry host[:port] (e.g. 127.0.0.1:5000), got "${value}"`);
  }
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
export function loadConfig(env: Env): BuildConfig {
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
  return {
    grpcListen: hostPort('GRPC_LISTEN', read(env, 'GRPC_LISTEN')),
    natsUrl: url('NATS_URL', read(env, 'NATS_URL'), ['nats:', 'tls:']),
    databaseUrl: url('DATABASE_URL', read(env, 'DATABASE_URL'), ['postgres:', 'postgresql:']),
    busPrefix,
    logLevel,
    mirrorRegistry: registryHost('MIRROR_REGISTRY', read(env, 'MIRROR_REGISTRY')),
    insecureRegistries: read(env, 'REGISTRY_INSECURE_HOSTS')
      .split(',')
      .map((h) => h.trim())
      .filter((h) => h !== '')
      .map((h) => registryHost('REGISTRY_INSECURE_HOSTS', h)),
    registryAuthFile: read(env, 'REGISTRY_AUTH_FILE') || undefined,
    workerAckWaitMs: milliseconds('WORKER_ACK_WAIT_MS', read(env, 'WORKER_ACK_WAIT_MS')),
    workDir: workDir(env),
    gitCredentialsFile: read(env, 'GIT_CREDENTIALS_FILE') || undefined,
    gitSshProgram: read(env, 'GIT_SSH_PROGRAM'),
    buildLockTtlMs: milliseconds('BUILD_LOCK_TTL_MS', read(env, 'BUILD_LOCK_TTL_MS')),
  };
}

/** BUILD_WORK_DIR, else `$STAGELINE_STATE/build`, else the system's temporary directory. */
function workDir(env: Env): string {
  const explicit = read(env, 'BUILD_WORK_DIR');
  if (explicit !== '') {
    if (!isAbsolute(explicit)) throw new ConfigError('BUILD_WORK_DIR', 'must be an absolute path');
    return explicit;
  }
  const state = env.STAGELINE_STATE?.trim();
  return state ? join(state, 'build') : join(tmpdir(), 'stageline-build');
}

function milliseconds(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1000 || n > 3_600_000)
    throw new ConfigError(name, `expected 1000-3600000 ms, got "${value}"`);
  return n;
}
