// The build service's whole configuration: read once from the environment, validated, then passed down.
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import {
  type CommonConfig,
  ConfigError,
  commonConfig,
  type Env,
  envReader,
  integer,
  registryHost,
} from '@stageline/service';

export { ConfigError } from '@stageline/service';

export interface BuildConfig extends CommonConfig {
  /** host:port of the mirror registry every mirrored and built image goes to; deploys pull only from it. */
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
  /** On SIGTERM, how long jobs in flight may finish before they are handed back to another worker. */
  workerDrainGraceMs: number;
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
  MIRROR_REGISTRY: '127.0.0.1:5000',
  REGISTRY_INSECURE_HOSTS: '',
  REGISTRY_AUTH_FILE: '',
  // A dead worker's job moves on within 6 s; heartbeats every 2 s keep a live one's (packages/bus).
  WORKER_ACK_WAIT_MS: '6000',
  // Below stack.sh's 10 s before SIGKILL: what does not finish by then is handed back, never lost.
  WORKER_DRAIN_GRACE_MS: '8000',
  BUILD_WORK_DIR: '',
  GIT_CREDENTIALS_FILE: '',
  GIT_SSH_PROGRAM: 'ssh',
  BUILD_LOCK_TTL_MS: '30000',
} as const;

/** A registry as image references name it: host or host:port, no scheme, no path. */
/** Throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env): BuildConfig {
  const read = envReader(env, DEFAULTS);
  return {
    ...commonConfig(env, '127.0.0.1:50053', 'build'),
    mirrorRegistry: registryHost('MIRROR_REGISTRY', read('MIRROR_REGISTRY')),
    insecureRegistries: read('REGISTRY_INSECURE_HOSTS')
      .split(',')
      .map((h) => h.trim())
      .filter((h) => h !== '')
      .map((h) => registryHost('REGISTRY_INSECURE_HOSTS', h)),
    registryAuthFile: read('REGISTRY_AUTH_FILE') || undefined,
    workerAckWaitMs: integer('WORKER_ACK_WAIT_MS', read('WORKER_ACK_WAIT_MS'), 1000, 3_600_000),
    workerDrainGraceMs: integer('WORKER_DRAIN_GRACE_MS', read('WORKER_DRAIN_GRACE_MS'), 0, 3_600_000),
    workDir: workDir(env),
    gitCredentialsFile: read('GIT_CREDENTIALS_FILE') || undefined,
    gitSshProgram: read('GIT_SSH_PROGRAM'),
    buildLockTtlMs: integer('BUILD_LOCK_TTL_MS', read('BUILD_LOCK_TTL_MS'), 1000, 3_600_000),
  };
}

/** BUILD_WORK_DIR, else `$STAGELINE_STATE/build`, else the system's temporary directory. */
function workDir(env: Env): string {
  const explicit = envReader(env, DEFAULTS)('BUILD_WORK_DIR');
  if (explicit !== '') {
    if (!isAbsolute(explicit)) throw new ConfigError('BUILD_WORK_DIR', 'must be an absolute path');
    return explicit;
  }
  const state = env.STAGELINE_STATE?.trim();
  return state ? join(state, 'build') : join(tmpdir(), 'stageline-build');
}
