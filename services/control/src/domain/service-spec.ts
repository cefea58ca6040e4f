import { invalidArgument } from '@stageline/errors';
import type { control } from '@stageline/proto';
import { SecretError, type Secrets } from '@stageline/secrets';
import { type AutoDeploy, normalizeAutoDeploy } from './auto-deploy.ts';
import { DbMode, Engine, type KindName, kindName } from './kinds.ts';
import { checkAtMost, kib, LIMITS } from './limits.ts';
import {
  checkBranch,
  checkBuildTarget,
  checkCommit,
  checkCron,
  checkDnsLabel,
  checkEnvKey,
  checkGitUrl,
  checkImageReference,
  checkImageRepository,
  checkImageTag,
  checkRepoPath,
  normalizeRepoPath,
} from './names.ts';

// A service's definition, validated field by field and completed with defaults. Error fields are
// the proto's snake_case paths under the request's `service`, so a client can point at the field.

export const DEFAULT_BUILD_RESOURCES = { cpuMillis: 4000, memoryMib: 4096 } as const;
export const DEFAULT_READINESS_TIMEOUT_SECONDS = 300;
export const DEFAULT_BUILD_TIMEOUT_SECONDS = 1800;
export const DEFAULT_JOB_MAX_DURATION_SECONDS = 300;

export const DEFAULT_DATABASE_VERSION: Record<number, string> = {
  [Engine.POSTGRESQL]: '16',
  [Engine.MYSQL]: '8.0',
  [Engine.REDIS]: '7',
  [Engine.MONGODB]: '7.0',
};

type Source = NonNullable<control.Service['source']>;

/** The definition fields of a service (what UpdateService replaces). */
export interface ServiceDefinition {
  name: string;
  kind: KindName;
  source: Source;
  buildResources: control.BuildResources;
  envVars: control.EnvVar[];
  readinessTimeoutSeconds: number;
  healthCheck?: control.HealthCheck;
  strategy?: control.DeploymentStrategy;
  chart?: control.CustomChart;
  autoDeploy?: AutoDeploy;
}

function check(field: string, error: string | undefined): void {
  if (error !== undefined) throw invalidArgument(field, error);
}

function checkRange(field: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max)
    throw invalidArgument(field, `must be between ${min} and ${max}`);
}

function ports(field: string, list: readonly control.Port[]): control.Port[] {
  checkAtMost(field, 'the number of ports', list.length, LIMITS.portsPerService);
  const seen = new Set<number>();
  return list.map((p, i) => {
    checkRange(`${field}[${i}].port`, p.port, 1, 65535);
    if (seen.has(p.port)) throw invalidArgument(`${field}[${i}].port`, `port ${p.port} is listed twice`);
    seen.add(p.port);
    return { port: p.port, public: p.public };
  });
}

function containerSource(field: string, src: control.ContainerSource): control.ContainerSource {
  check(`${field}.image`, checkImageRepository(src.image));
  const tag = src.tag === '' ? 'latest' : src.tag;
  check(`${field}.tag`, checkImageTag(tag));
  return { image: src.image, tag, ports: ports(`${field}.ports`, src.ports) };
}

function applicationSource(field: string, src: control.ApplicationSource): control.ApplicationSource {
  check(`${field}.git_url`, checkGitUrl(src.gitUrl));
  if (src.commit !== '') check(`${field}.commit`, checkCommit(src.commit));
  const branch = src.branch === '' && src.commit === '' ? 'main' : src.branch;
  if (branch !== '') check(`${field}.branch`, checkBranch(branch));
  check(`${field}.root_path`, checkRepoPath(src.rootPath));
  const dockerfile = src.dockerfilePath === '' ? 'Dockerfile' : src.dockerfilePath;
  check(`${field}.dockerfile_path`, checkRepoPath(dockerfile));
  if (normalizeRepoPath(dockerfile) === '') throw invalidArgument(`${field}.dockerfile_path`, 'must name a file');
  check(`${field}.build_target`, checkBuildTarget(src.buildTarget));
  const timeout = src.buildTimeoutSeconds === 0 ? DEFAULT_BUILD_TIMEOUT_SECONDS : src.buildTimeoutSeconds;
  checkRange(`${field}.build_timeout_seconds`, timeout, 30, 6 * 3600);
  return {
    gitUrl: src.gitUrl,
    branch,
    commit: src.commit,
    rootPath: normalizeRepoPath(src.rootPath),
    dockerfilePath: normalizeRepoPath(dockerfile),
    buildTarget: src.buildTarget,
    buildTimeoutSeconds: timeout,
    ports: ports(`${field}.ports`, src.ports),
  };
}

function databaseSource(field: string, src: control.DatabaseSource): control.DatabaseSource {
  if (!Object.values(Engine).includes(src.engine as never)) throw invalidArgument(`${field}.engine`, 'is required');
  const version = src.version === '' ? (DEFAULT_DATABASE_VERSION[src.engine] ?? '') : src.version;
  if (!/^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$/.test(version)) {
    throw invalidArgument(`${field}.version`, 'must be letters, digits, ".", "_" and "-"');
  }
  const mode = src.mode === 0 ? DbMode.CONTAINER : src.mode;
  if (!Object.values(DbMode).includes(mode as never)) throw invalidArgument(`${field}.mode`, 'is not a known mode');
  if (mode === DbMode.MANAGED) {
    if (src.engine !== Engine.POSTGRESQL)
      throw invalidArgument(`${field}.mode`, 'MANAGED is available for POSTGRESQL only');
    if (src.image !== '') throw invalidArgument(`${field}.image`, 'only CONTAINER mode runs an image');
  }
  if (src.image !== '') check(`${field}.image`, checkImageReference(src.image));
  return { engine: src.engine, version, mode, image: src.image };
}

function jobSource(field: string, kind: KindName, src: control.JobSource): control.JobSource {
  let from: control.JobSource['from'];
  switch (src.from?.$case) {
    case 'container':
      from = { $case: 'container', value: containerSource(`${field}.container`, src.from.value) };
      break;
    case 'application':
      from = { $case: 'application', value: applicationSource(`${field}.application`, src.from.value) };
      break;
    case undefined:
      throw invalidArgument(`${field}.from`, 'a job runs a container image or an application built from git: set one');
  }
  if (kind === 'CRON_JOB') {
    check(`${field}.schedule`, checkCron(src.schedule));
    if (src.onDeploy || src.onStop || src.onDelete) {
      throw invalidArgument(
        `${field}.on_deploy`,
        'lifecycle events apply to LIFECYCLE_JOB only; a CRON_JOB runs on its schedule',
      );
    }
  } else {
    if (src.schedule !== '') throw invalidArgument(`${field}.schedule`, 'applies to CRON_JOB only');
    if (!src.onDeploy && !src.onStop && !src.onDelete) {
      throw invalidArgument(
        `${field}.on_deploy`,
        'a LIFECYCLE_JOB needs at least one of on_deploy, on_stop, on_delete',
      );
    }
  }
  const maxDuration = src.maxDurationSeconds === 0 ? DEFAULT_JOB_MAX_DURATION_SECONDS : src.maxDurationSeconds;
  checkRange(`${field}.max_duration_seconds`, maxDuration, 1, 24 * 3600);
  checkRange(`${field}.max_retries`, src.maxRetries, 0, 10);
  return {
    from,
    schedule: src.schedule.trim(),
    onDeploy: src.onDeploy,
    onStop: src.onStop,
    onDelete: src.onDelete,
    maxDurationSeconds: maxDuration,
    maxRetries: src.maxRetries,
  };
}

function healthCheck(field: string, input: control.HealthCheck): control.HealthCheck {
  const period = input.periodSeconds || 2;
  checkRange(`${field}.period_seconds`, period, 1, 300);
  checkRange(`${field}.initial_delay_seconds`, input.initialDelaySeconds, 0, 3600);
  let probe: control.HealthCheck['probe'];
  switch (input.probe?.$case) {
    case 'http': {
      const path = input.probe.value.path || '/';
      if (!path.startsWith('/') || /[\s\p{Cc}]/u.test(path))
        throw invalidArgument(`${field}.http.path`, 'must be an absolute URL path without blanks');
      checkRange(`${field}.http.port`, input.probe.value.port, 1, 65535);
      probe = { $case: 'http', value: { path, port: input.probe.value.port } };
      break;
    }
    case 'tcp':
      checkRange(`${field}.tcp.port`, input.probe.value.port, 1, 65535);
      probe = { $case: 'tcp', value: { port: input.probe.value.port } };
      break;
    case 'exec': {
      const command = input.probe.value.command;
      if (command.length === 0 || command[0] === '') throw invalidArgument(`${field}.exec.command`, 'is required');
      checkAtMost(`${field}.exec.command`, 'the number of arguments', command.length, LIMITS.execArgs);
      if (command.some((a) => a.includes('\0'))) throw invalidArgument(`${field}.exec.command`, 'must not contain NUL');
      probe = { $case: 'exec', value: { command: [...command] } };
      break;
    }
    case undefined:
      throw invalidArgument(`${field}.probe`, 'set http, tcp or exec');
  }
  return { probe, initialDelaySeconds: input.initialDelaySeconds, periodSeconds: period };
}

// Kubernetes IntOrString for maxSurge / maxUnavailable: a count or a percentage.
const SURGE = /^(0|[1-9][0-9]{0,3})%?$/;

function strategy(field: string, kind: KindName, input: control.DeploymentStrategy): control.DeploymentStrategy {
  if (kind !== 'CONTAINER' && kind !== 'APPLICATION') {
    throw invalidArgument(field, 'applies to CONTAINER and APPLICATION services');
  }
  const T = 'DEPLOYMENT_STRATEGY_TYPE_';
  const type = input.type === 0 ? 1 : input.type;
  if (type !== 1 && type !== 2) throw invalidArgument(`${field}.type`, `must be ${T}ROLLING_UPDATE or ${T}RECREATE`);
  if (type === 2) {
    if (input.maxSurge !== '' || input.maxUnavailable !== '') {
      throw invalidArgument(`${field}.max_surge`, 'max_surge and max_unavailable apply to ROLLING_UPDATE only');
    }
    return { type, maxSurge: '', maxUnavailable: '' };
  }
  const maxSurge = input.maxSurge === '' ? '25%' : input.maxSurge;
  const maxUnavailable = input.maxUnavailable === '' ? '25%' : input.maxUnavailable;
  for (const [name, value] of [
    ['max_surge', maxSurge],
    ['max_unavailable', maxUnavailable],
  ] as const) {
    if (!SURGE.test(value) || (value.endsWith('%') && Number.parseInt(value, 10) > 100)) {
      throw invalidArgument(`${field}.${name}`, 'must be a number of pods ("1") or a percentage up to 100% ("25%")');
    }
  }
  if (/^0%?$/.test(maxSurge) && /^0%?$/.test(maxUnavailable)) {
    throw invalidArgument(`${field}.max_unavailable`, 'max_surge and max_unavailable cannot both be 0');
  }
  return { type, maxSurge, maxUnavailable };
}

const CHART_NAME = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;
const CHART_VERSION = /^[0-9A-Za-z][0-9A-Za-z.+~^<>=*|, -]{0,63}$/;

function customChart(field: string, kind: KindName, input: control.CustomChart): control.CustomChart {
  if (kind !== 'CONTAINER' && kind !== 'APPLICATION') {
    throw invalidArgument(field, 'a custom chart applies to CONTAINER and APPLICATION services');
  }
  let source: control.CustomChart['source'];
  switch (input.source?.$case) {
    case 'path': {
      if (kind !== 'APPLICATION') {
        throw invalidArgument(
          `${field}.path`,
          'a chart path names a directory of the git repository: APPLICATION only',
        );
      }
      const problem = checkRepoPath(input.source.value);
      if (problem !== undefined) throw invalidArgument(`${field}.path`, problem);
      const path = normalizeRepoPath(input.source.value);
      if (path === '') throw invalidArgument(`${field}.path`, 'must name the chart directory');
      source = { $case: 'path', value: path };
      break;
    }
    case 'repository': {
      const ref = input.source.value;
      let url: URL;
      try {
        url = new URL(ref.url);
      } catch {
        throw invalidArgument(`${field}.repository.url`, 'must be an https:// (or http://, oci://) URL');
      }
      if (!['https:', 'http:', 'oci:'].includes(url.protocol) || url.username !== '' || url.password !== '') {
        throw invalidArgument(
          `${field}.repository.url`,
          'must be an https:// (or http://, oci://) URL without credentials',
        );
      }
      if (url.protocol !== 'oci:' && !CHART_NAME.test(ref.name)) {
        throw invalidArgument(`${field}.repository.name`, 'the chart name in the repository is required');
      }
      if (ref.name !== '' && !CHART_NAME.test(ref.name)) {
        throw invalidArgument(`${field}.repository.name`, 'must be a chart name (lowercase letters, digits, . _ -)');
      }
      if (ref.version !== '' && !CHART_VERSION.test(ref.version)) {
        throw invalidArgument(`${field}.repository.version`, 'must be a SemVer version or range');
      }
      source = { $case: 'repository', value: { url: ref.url, name: ref.name, version: ref.version } };
      break;
    }
    case undefined:
      throw invalidArgument(`${field}.path`, 'set path (in the git repository) or repository');
  }
  checkAtMost(
    `${field}.values_yaml`,
    'its size',
    Buffer.byteLength(input.valuesYaml),
    LIMITS.chartValuesBytes,
    'bytes',
  );
  if (input.valuesYaml.includes('\0')) throw invalidArgument(`${field}.values_yaml`, 'must not contain NUL');
  return { source, valuesYaml: input.valuesYaml };
}

const EXPECTED_SOURCE: Record<KindName, Source['$case']> = {
  DATABASE: 'database',
  LIFECYCLE_JOB: 'job',
  CRON_JOB: 'job',
  CONTAINER: 'container',
  APPLICATION: 'application',
};

/** Validates a service definition from a request and fills in its defaults. */
export function normalizeDefinition(input: control.Service, field = 'service'): ServiceDefinition {
  check(`${field}.name`, checkDnsLabel(input.name));
  const kind = kindName(input.kind);
  if (kind === undefined)
    throw invalidArgument(`${field}.kind`, 'is required: DATABASE, LIFECYCLE_JOB, CRON_JOB, CONTAINER or APPLICATION');
  const expected = EXPECTED_SOURCE[kind];
  const src = input.source;
  if (src === undefined)
    throw invalidArgument(`${field}.${expected}`, `a ${kind} service needs its ${expected} source`);
  if (src.$case !== expected) {
    throw invalidArgument(`${field}.${src.$case}`, `a ${kind} service takes a ${expected} source, not ${src.$case}`);
  }
  let source: Source;
  switch (src.$case) {
    case 'container':
      source = { $case: 'container', value: containerSource(`${field}.container`, src.value) };
      break;
    case 'application':
      source = { $case: 'application', value: applicationSource(`${field}.application`, src.value) };
      break;
    case 'database':
      source = { $case: 'database', value: databaseSource(`${field}.database`, src.value) };
      break;
    case 'job':
      source = { $case: 'job', value: jobSource(`${field}.job`, kind, src.value) };
      break;
  }
  const cpu = input.buildResources?.cpuMillis || DEFAULT_BUILD_RESOURCES.cpuMillis;
  const memory = input.buildResources?.memoryMib || DEFAULT_BUILD_RESOURCES.memoryMib;
  checkRange(`${field}.build_resources.cpu_millis`, cpu, 100, 64_000);
  checkRange(`${field}.build_resources.memory_mib`, memory, 128, 256 * 1024);
  const readiness = input.readinessTimeoutSeconds || DEFAULT_READINESS_TIMEOUT_SECONDS;
  checkRange(`${field}.readiness_timeout_seconds`, readiness, 1, 3600);
  const keys = new Set<string>();
  checkAtMost(`${field}.env_vars`, 'the number of env vars', input.envVars.length, LIMITS.envVarsPerService);
  const envVars = input.envVars.map((v, i) => {
    check(`${field}.env_vars[${i}].key`, checkEnvKey(v.key));
    if (keys.has(v.key)) throw invalidArgument(`${field}.env_vars[${i}].key`, `${v.key} is set twice`);
    keys.add(v.key);
    if (Buffer.byteLength(v.value) > LIMITS.envValueBytes)
      throw invalidArgument(`${field}.env_vars[${i}].value`, `must be at most ${kib(LIMITS.envValueBytes)}`);
    if (v.value.includes('\0')) throw invalidArgument(`${field}.env_vars[${i}].value`, 'must not contain NUL');
    return { key: v.key, value: v.value, secret: v.secret };
  });
  const envBytes = envVars.reduce((sum, v) => sum + v.key.length + Buffer.byteLength(v.value), 0);
  checkAtMost(
    `${field}.env_vars`,
    'the size of all env vars (keys and values)',
    envBytes,
    LIMITS.envVarsBytesPerService,
    'bytes',
  );
  return {
    name: input.name,
    kind,
    source,
    buildResources: { cpuMillis: cpu, memoryMib: memory },
    envVars,
    readinessTimeoutSeconds: readiness,
    ...(input.healthCheck ? { healthCheck: healthCheck(`${field}.health_check`, input.healthCheck) } : {}),
    ...(input.strategy ? { strategy: strategy(`${field}.strategy`, kind, input.strategy) } : {}),
    ...(input.chart ? { chart: customChart(`${field}.chart`, kind, input.chart) } : {}),
    ...autoDeployOf(`${field}.auto_deploy`, kind, source, input.autoDeploy),
  };
}

function autoDeployOf(field: string, kind: KindName, source: Source, input: control.AutoDeploy | undefined) {
  const from = source.$case === 'job' ? (source.value.from?.$case ?? '') : source.$case;
  const autoDeploy = normalizeAutoDeploy(field, kind, from, input);
  return autoDeploy === undefined ? {} : { autoDeploy };
}

/**
 * Whether a stored envelope holds `value`. One this control cannot open (sealed under a key it does not
 * have, or damaged) holds nothing it could compare: a value sent again replaces it, which is how such a
 * secret is mended.
 */
function opensTo(secrets: Secrets, stored: string, value: string): boolean {
  try {
    return secrets.open(stored) === value;
  } catch (e) {
    if (e instanceof SecretError) return false;
    throw e;
  }
}

/**
 * Secret values are write-only and stored sealed (packages/secrets). On update, a secret sent back
 * empty (as every read returns it) keeps its stored value; a new secret needs a value; a value equal
 * to the stored one keeps its envelope, so an unchanged definition stays unchanged.
 */
export function mergeSecrets(
  definition: ServiceDefinition,
  storedSecrets: Readonly<Record<string, string>>,
  secrets: Secrets,
  field = 'service',
): { definition: ServiceDefinition; secrets: Record<string, string> } {
  const sealed: Record<string, string> = {};
  const envVars = definition.envVars.map((v, i) => {
    if (!v.secret) return v;
    const stored = storedSecrets[v.key];
    if (v.value === '' && stored === undefined) {
      throw invalidArgument(`${field}.env_vars[${i}].value`, `secret ${v.key} needs a value`);
    }
    sealed[v.key] =
      stored !== undefined && (v.value === '' || opensTo(secrets, stored, v.value)) ? stored : secrets.seal(v.value);
    return { ...v, value: '' };
  });
  return { definition: { ...definition, envVars }, secrets: sealed };
}
