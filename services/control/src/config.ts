// One validated configuration object from the environment; a bad value stops the start with its name.
import { resolve } from 'node:path';
import {
  KUBE_CONTEXTS_VARIABLE,
  parseKubeContexts,
  parseSourcePolicy,
  SOURCE_ALLOW_VARIABLE,
  type SourcePolicy,
} from '@stageline/policy';
import type { KeySource } from '@stageline/secrets';
import { type CommonConfig, ConfigError, commonConfig, type Env, envReader, hostPort } from '@stageline/service';

export interface ControlConfig extends CommonConfig {
  /** Where the planner serves PlannerService: every action goes there. */
  plannerAddress: string;
  /** A build service (any of them): ExplainBuild is answered there. */
  buildAddress: string;
  /** A deploy service (any of them): release history and cron runs are read there. */
  deployAddress: string;
  /**
   * A file holding an admin token (`stl_…`) to make live at start, once — the first credential of a
   * new install (set-up writes `$STAGELINE_STATE/admin.token`). Empty: none.
   */
  adminTokenFile: string;
  /** The secret keys; absent: from the environment (STAGELINE_SECRET_KEY_FILE, _DIR, $STAGELINE_STATE/keys). */
  secretKeys?: KeySource;
  /** The kube contexts environments may name (STAGELINE_KUBE_CONTEXTS, as the deploy service reads it). Absent: none. */
  kubeContexts?: string[];
  /** Exceptions to the source policy (STAGELINE_SOURCE_ALLOW). Absent: none. */
  sourcePolicy?: SourcePolicy;
  /** Deploy hosts new `local` environments are bound to (STAGELINE_DEPLOY_HOSTS, comma-separated). Empty: none. */
  deployHosts?: string[];
  /** host:port of the web console (HTTPS, STAGELINE_CONSOLE_LISTEN; `off`: none). Absent: none. */
  consoleListen?: string;
  /** Auto-deploy's git clones go under `<stateDir>/auto-deploy` (STAGELINE_STATE). Absent: `.stageline`. */
  stateDir?: string;
  /** Auto-deploy's pollers look for due environments this often (STAGELINE_AUTO_DEPLOY_TICK_MS). Absent: 5000. */
  autoDeployTickMs?: number;
}

/** Reads one of @stageline/policy's variables, its parse errors as ConfigError naming the variable. */
export function policyVariable<T>(name: string, value: string, parse: (v: string) => T): T {
  try {
    return parse(value);
  } catch (e) {
    throw new ConfigError(name, e instanceof Error ? e.message : String(e));
  }
}

/** Comma-separated DNS labels (the deploy workers' DEPLOY_HOST values). */
export function parseDeployHosts(value: string): string[] {
  const hosts = value
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '');
  for (const h of hosts) {
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(h)) throw new Error(`"${h}" is not a DNS label`);
  }
  return [...new Set(hosts)];
}

export function loadConfig(env: Env = process.env): ControlConfig {
  const read = envReader(env, {
    STAGELINE_PLANNER_ADDRESS: '127.0.0.1:50052',
    STAGELINE_BUILD_ADDRESS: '127.0.0.1:50053',
    STAGELINE_DEPLOY_ADDRESS: '127.0.0.1:50054',
    STAGELINE_ADMIN_TOKEN_FILE: '',
    [KUBE_CONTEXTS_VARIABLE]: '',
    [SOURCE_ALLOW_VARIABLE]: '',
    STAGELINE_CONSOLE_LISTEN: '127.0.0.1:8443',
    STAGELINE_STATE: '.stageline',
    STAGELINE_AUTO_DEPLOY_TICK_MS: '5000',
    STAGELINE_DEPLOY_HOSTS: '',
  });
  const tick = Number(read('STAGELINE_AUTO_DEPLOY_TICK_MS'));
  if (!Number.isInteger(tick) || tick < 100 || tick > 3_600_000)
    throw new ConfigError('STAGELINE_AUTO_DEPLOY_TICK_MS', 'must be 100..3600000 milliseconds');
  const consoleListen = read('STAGELINE_CONSOLE_LISTEN');
  return {
    ...commonConfig(env, '127.0.0.1:50051', 'control'),
    plannerAddress: hostPort('STAGELINE_PLANNER_ADDRESS', read('STAGELINE_PLANNER_ADDRESS')),
    buildAddress: hostPort('STAGELINE_BUILD_ADDRESS', read('STAGELINE_BUILD_ADDRESS')),
    deployAddress: hostPort('STAGELINE_DEPLOY_ADDRESS', read('STAGELINE_DEPLOY_ADDRESS')),
    adminTokenFile: read('STAGELINE_ADMIN_TOKEN_FILE'),
    kubeContexts: policyVariable(KUBE_CONTEXTS_VARIABLE, read(KUBE_CONTEXTS_VARIABLE), parseKubeContexts),
    sourcePolicy: policyVariable(SOURCE_ALLOW_VARIABLE, read(SOURCE_ALLOW_VARIABLE), parseSourcePolicy),
    stateDir: resolve(read('STAGELINE_STATE')),
    autoDeployTickMs: tick,
    deployHosts: policyVariable('STAGELINE_DEPLOY_HOSTS', read('STAGELINE_DEPLOY_HOSTS'), parseDeployHosts),
    ...(consoleListen === 'off' ? {} : { consoleListen: hostPort('STAGELINE_CONSOLE_LISTEN', consoleListen) }),
  };
}
