// The environment file's shape (what the schema allows) and the desired state it describes, in the
// API's own messages, with the server's defaults filled in so that it compares with what the server reads back.
import { defaultNamespace } from '@stageline/policy';
import { control } from '@stageline/proto';
import { EnvironmentFileError, type FieldPath, type FileProblem, type LoadedFile } from './load.ts';

type KindName = 'DATABASE' | 'LIFECYCLE_JOB' | 'CRON_JOB' | 'CONTAINER' | 'APPLICATION';

export interface PortSpec {
  port: number;
  public?: boolean;
}
export interface ContainerSpec {
  image: string;
  tag?: string;
  ports?: PortSpec[];
}
export interface ApplicationSpec {
  gitUrl: string;
  branch?: string;
  commit?: string;
  rootPath?: string;
  dockerfilePath?: string;
  buildTarget?: string;
  buildTimeoutSeconds?: number;
  ports?: PortSpec[];
}
export interface DatabaseSpec {
  engine: 'POSTGRESQL' | 'MYSQL' | 'REDIS' | 'MONGODB';
  version?: string;
  mode?: 'CONTAINER' | 'MANAGED';
  image?: string;
}
export interface JobSpec {
  container?: ContainerSpec;
  application?: ApplicationSpec;
  schedule?: string;
  onDeploy?: boolean;
  onStop?: boolean;
  onDelete?: boolean;
  maxDurationSeconds?: number;
  maxRetries?: number;
}
export interface EnvVarSpec {
  key: string;
  value?: string;
  fromEnv?: string;
  secret?: boolean;
}
export interface HealthCheckSpec {
  http?: { path?: string; port: number };
  tcp?: { port: number };
  exec?: { command: string[] };
  initialDelaySeconds?: number;
  periodSeconds?: number;
}
export interface ServiceSpec {
  name: string;
  kind: KindName;
  stage?: string;
  skipped?: boolean;
  container?: ContainerSpec;
  application?: ApplicationSpec;
  database?: DatabaseSpec;
  job?: JobSpec;
  buildResources?: { cpuMillis?: number; memoryMib?: number };
  envVars?: EnvVarSpec[];
  readinessTimeoutSeconds?: number;
  healthCheck?: HealthCheckSpec;
  strategy?: { type?: 'ROLLING_UPDATE' | 'RECREATE'; maxSurge?: string | number; maxUnavailable?: string | number };
  chart?: { path?: string; repository?: { url: string; name?: string; version?: string }; valuesYaml?: string };
  autoDeploy?: { enabled?: boolean; includePaths?: string[]; excludePaths?: string[]; tagPattern?: string };
}
export interface EnvironmentFile {
  project: string;
  name: string;
  runtime?: 'local' | 'kubernetes';
  settings?: {
    maxParallelBuilds?: number;
    maxParallelDeploys?: number;
    schedulingMode?: 'PIPELINED' | 'STRICT';
    mirrorMode?: 'SERVICE' | 'SHARED';
    kubernetesContext?: string;
    namespace?: string;
  };
  stages?: { name: string; description?: string }[];
  services?: ServiceSpec[];
}

/** Every setting, resolved (namespace included): what GetEnvironment reads back. */
export interface ResolvedSettings {
  maxParallelBuilds: number;
  maxParallelDeploys: number;
  schedulingMode: control.SchedulingMode;
  mirrorMode: control.MirrorMode;
  kubernetesContext: string;
  namespace: string;
}

export interface DesiredService {
  name: string;
  kind: control.ServiceKind;
  /** Absent: wherever the server places a new service; an existing one stays where it is. */
  stage: string | undefined;
  skipped: boolean;
  /** The definition to send (secret values included); id, stage and skipped are not part of it. */
  definition: control.Service;
  /** Whether the file carries a value for a secret (a secret without one keeps its stored value). */
  sendsSecretValues: boolean;
  path: FieldPath;
}

export interface DesiredEnvironment {
  project: string;
  name: string;
  runtime: string;
  settings: ResolvedSettings;
  /** Absent: the file leaves the pipeline's stages alone. */
  stages: { name: string; description: string; path: FieldPath }[] | undefined;
  services: DesiredService[];
  source: LoadedFile;
}

// The server's rule, from the one place it lives.
export { defaultNamespace };

const prefixed = (prefix: string, value: string | undefined) => (value === undefined ? undefined : `${prefix}${value}`);

function serviceJson(
  spec: ServiceSpec,
  env: NodeJS.ProcessEnv,
  path: FieldPath,
  problems: FileProblem[],
  file: LoadedFile,
) {
  const envVars = (spec.envVars ?? []).map((v, i) => {
    let value = v.value ?? '';
    if (v.value !== undefined && v.fromEnv !== undefined) {
      problems.push(file.problem([...path, 'envVars', i, 'fromEnv'], 'set value or fromEnv, not both'));
    } else if (v.fromEnv !== undefined) {
      const found = env[v.fromEnv];
      if (found === undefined) {
        problems.push(file.problem([...path, 'envVars', i, 'fromEnv'], `${v.fromEnv} is not set in this shell`));
      } else {
        value = found;
      }
    } else if (v.value === undefined && !v.secret) {
      problems.push(file.problem([...path, 'envVars', i], 'needs a value (or fromEnv)'));
    }
    return { key: v.key, value, secret: v.secret ?? false };
  });
  const job = spec.job;
  return {
    json: {
      name: spec.name,
      kind: `SERVICE_KIND_${spec.kind}`,
      container: spec.container,
      application: spec.application,
      database: spec.database && {
        ...spec.database,
        engine: prefixed('DATABASE_ENGINE_', spec.database.engine),
        mode: prefixed('DATABASE_MODE_', spec.database.mode),
      },
      job,
      buildResources: spec.buildResources,
      envVars,
      readinessTimeoutSeconds: spec.readinessTimeoutSeconds,
      healthCheck: spec.healthCheck,
      strategy: spec.strategy && {
        type: prefixed('DEPLOYMENT_STRATEGY_TYPE_', spec.strategy.type),
        // YAML reads `maxSurge: 1` as a number; the API takes the Kubernetes IntOrString as text.
        maxSurge: spec.strategy.maxSurge === undefined ? undefined : String(spec.strategy.maxSurge),
        maxUnavailable: spec.strategy.maxUnavailable === undefined ? undefined : String(spec.strategy.maxUnavailable),
      },
      chart: spec.chart,
      autoDeploy: spec.autoDeploy,
    },
    sendsSecretValues: envVars.some((v) => v.secret && v.value !== ''),
  };
}

/** The desired state a loaded file describes; throws EnvironmentFileError for what the schema cannot say. */
export function desiredEnvironment(file: LoadedFile, env: NodeJS.ProcessEnv = process.env): DesiredEnvironment {
  const c = file.content;
  const problems: FileProblem[] = [];

  const stageNames = new Map<string, number>();
  (c.stages ?? []).forEach((s, i) => {
    const first = stageNames.get(s.name);
    if (first !== undefined) {
      problems.push(
        file.problem(['stages', i, 'name'], `stage ${JSON.stringify(s.name)} is listed twice (also stages[${first}])`),
      );
    } else {
      stageNames.set(s.name, i);
    }
  });

  const serviceNames = new Map<string, number>();
  const services = (c.services ?? []).map((spec, i): DesiredService => {
    const path: FieldPath = ['services', i];
    const first = serviceNames.get(spec.name);
    if (first !== undefined) {
      problems.push(file.problem([...path, 'name'], `service ${spec.name} is listed twice (also services[${first}])`));
    } else {
      serviceNames.set(spec.name, i);
    }
    if (c.stages && spec.stage !== undefined && !stageNames.has(spec.stage)) {
      problems.push(
        file.problem([...path, 'stage'], `${JSON.stringify(spec.stage)} is not one of the stages listed in this file`),
      );
    }
    const { json, sendsSecretValues } = serviceJson(spec, env, path, problems, file);
    const definition = control.Service.fromJSON(json);
    return {
      name: spec.name,
      kind: definition.kind,
      stage: spec.stage,
      skipped: spec.skipped ?? false,
      definition,
      sendsSecretValues,
      path,
    };
  });
  if (problems.length > 0) throw new EnvironmentFileError(problems);

  const s = c.settings ?? {};
  return {
    project: c.project,
    name: c.name,
    runtime: c.runtime ?? 'local',
    settings: {
      maxParallelBuilds: s.maxParallelBuilds ?? 7,
      maxParallelDeploys: s.maxParallelDeploys ?? 7,
      schedulingMode: control.schedulingModeFromJSON(`SCHEDULING_MODE_${s.schedulingMode ?? 'PIPELINED'}`),
      mirrorMode: control.mirrorModeFromJSON(`MIRROR_MODE_${s.mirrorMode ?? 'SERVICE'}`),
      kubernetesContext: s.kubernetesContext ?? '',
      namespace: s.namespace ?? defaultNamespace(c.project, c.name),
    },
    stages: c.stages?.map((st, i) => ({ name: st.name, description: st.description ?? '', path: ['stages', i] })),
    services,
    source: file,
  };
}

// --- the server's defaults (services/control/src/domain/service-spec.ts), so that comparing a file
// with what the server reads back sees only real differences ---

const DATABASE_VERSION: Partial<Record<control.DatabaseEngine, string>> = {
  [control.DatabaseEngine.DATABASE_ENGINE_POSTGRESQL]: '16',
  [control.DatabaseEngine.DATABASE_ENGINE_MYSQL]: '8.0',
  [control.DatabaseEngine.DATABASE_ENGINE_REDIS]: '7',
  [control.DatabaseEngine.DATABASE_ENGINE_MONGODB]: '7.0',
};

const repoPath = (value: string) =>
  value
    .split('/')
    .filter((p) => p !== '' && p !== '.')
    .join('/');

function container(src: control.ContainerSource): control.ContainerSource {
  return {
    image: src.image,
    tag: src.tag || 'latest',
    ports: src.ports.map((p) => ({ port: p.port, public: p.public })),
  };
}

function application(src: control.ApplicationSource): control.ApplicationSource {
  return {
    gitUrl: src.gitUrl,
    branch: src.branch === '' && src.commit === '' ? 'main' : src.branch,
    commit: src.commit,
    rootPath: repoPath(src.rootPath),
    dockerfilePath: repoPath(src.dockerfilePath || 'Dockerfile'),
    buildTarget: src.buildTarget,
    buildTimeoutSeconds: src.buildTimeoutSeconds || 1800,
    ports: src.ports.map((p) => ({ port: p.port, public: p.public })),
  };
}

/** A service definition as the server stores it: defaults filled in, secret values blanked, output fields cleared. */
export function normalizedDefinition(s: control.Service): control.Service {
  let source: control.Service['source'];
  const src = s.source;
  switch (src?.$case) {
    case 'container':
      source = { $case: 'container', value: container(src.value) };
      break;
    case 'application':
      source = { $case: 'application', value: application(src.value) };
      break;
    case 'database': {
      const mode = src.value.mode || control.DatabaseMode.DATABASE_MODE_CONTAINER;
      source = {
        $case: 'database',
        value: {
          engine: src.value.engine,
          version: src.value.version || (DATABASE_VERSION[src.value.engine] ?? ''),
          mode,
          image: src.value.image,
        },
      };
      break;
    }
    case 'job': {
      const from = src.value.from;
      source = {
        $case: 'job',
        value: {
          ...src.value,
          from:
            from?.$case === 'container'
              ? { $case: 'container', value: container(from.value) }
              : from?.$case === 'application'
                ? { $case: 'application', value: application(from.value) }
                : undefined,
          schedule: src.value.schedule.trim(),
          maxDurationSeconds: src.value.maxDurationSeconds || 300,
        },
      };
      break;
    }
    case undefined:
      source = undefined;
  }
  const hc = s.healthCheck;
  let healthCheck: control.HealthCheck | undefined;
  if (hc) {
    const probe = hc.probe;
    healthCheck = {
      probe:
        probe?.$case === 'http'
          ? { $case: 'http', value: { path: probe.value.path || '/', port: probe.value.port } }
          : probe,
      initialDelaySeconds: hc.initialDelaySeconds,
      periodSeconds: hc.periodSeconds || 2,
    };
  }
  let strategy: control.DeploymentStrategy | undefined;
  if (s.strategy) {
    const type = s.strategy.type || control.DeploymentStrategyType.DEPLOYMENT_STRATEGY_TYPE_ROLLING_UPDATE;
    strategy =
      type === control.DeploymentStrategyType.DEPLOYMENT_STRATEGY_TYPE_ROLLING_UPDATE
        ? { type, maxSurge: s.strategy.maxSurge || '25%', maxUnavailable: s.strategy.maxUnavailable || '25%' }
        : { type, maxSurge: s.strategy.maxSurge, maxUnavailable: s.strategy.maxUnavailable };
  }
  let chart: control.CustomChart | undefined;
  if (s.chart) {
    const src = s.chart.source;
    chart = {
      source: src?.$case === 'path' ? { $case: 'path', value: repoPath(src.value) } : src,
      valuesYaml: s.chart.valuesYaml,
    };
  }
  return control.Service.fromPartial({
    name: s.name,
    kind: s.kind,
    source,
    buildResources: {
      cpuMillis: s.buildResources?.cpuMillis || 4000,
      memoryMib: s.buildResources?.memoryMib || 4096,
    },
    envVars: s.envVars.map((v) => ({ key: v.key, value: v.secret ? '' : v.value, secret: v.secret })),
    readinessTimeoutSeconds: s.readinessTimeoutSeconds || 300,
    ...(healthCheck ? { healthCheck } : {}),
    ...(strategy ? { strategy } : {}),
    ...(chart ? { chart } : {}),
    ...(s.autoDeploy
      ? {
          autoDeploy: {
            ...s.autoDeploy,
            includePaths: s.autoDeploy.includePaths.map((g) => g.replace(/^\.?\/+/, '')),
            excludePaths: s.autoDeploy.excludePaths.map((g) => g.replace(/^\.?\/+/, '')),
          },
        }
      : {}),
  });
}

/** A service's definition as flat `field → shown value` pairs, env vars keyed by name, for field-level diffs. */
export function flattenDefinition(s: control.Service): Map<string, string> {
  const out = new Map<string, string>();
  const json = control.Service.toJSON(normalizedDefinition(s)) as Record<string, unknown>;
  const envVars = (json.envVars ?? []) as { key: string; value?: string; secret?: boolean }[];
  delete json.envVars;
  delete json.name;
  const walk = (value: unknown, prefix: string) => {
    if (Array.isArray(value)) {
      if (value.length === 0) out.set(prefix, '[]');
      value.forEach((v, i) => {
        walk(v, `${prefix}[${i}]`);
      });
    } else if (typeof value === 'object' && value !== null) {
      for (const [k, v] of Object.entries(value)) walk(v, prefix === '' ? k : `${prefix}.${k}`);
    } else {
      out.set(prefix, JSON.stringify(value));
    }
  };
  walk(json, '');
  for (const v of envVars) out.set(`envVars.${v.key}`, v.secret ? '(secret)' : JSON.stringify(v.value ?? ''));
  return out;
}

export const kindLabel = (kind: control.ServiceKind) => control.serviceKindToJSON(kind).replace('SERVICE_KIND_', '');
