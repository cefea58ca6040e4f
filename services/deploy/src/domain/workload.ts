// What one service runs as, derived from a deploy job: the single input of chart generation.

import { invalidArgument } from '@stageline/errors';
import { helmReleaseName } from '@stageline/policy';
import type { bus } from '@stageline/proto';
import { control } from '@stageline/proto';
import { parseCron } from './cron.ts';
import { type Exposure, exposureOf, MIRROR_PULL_SECRET, type MirrorAddresses, pullImage } from './kube-target.ts';
import { isDnsLabel } from './names.ts';

export type WorkloadKind = 'CONTAINER' | 'APPLICATION' | 'DATABASE' | 'LIFECYCLE_JOB' | 'CRON_JOB';

export type Strategy = { type: 'RollingUpdate'; maxSurge: string; maxUnavailable: string } | { type: 'Recreate' };

/** What a LIFECYCLE_JOB or CRON_JOB runs as: one pod to completion, retried, within a time limit. */
export interface JobSpec {
  /** Seconds one execution may run before it is killed and counts as failed. */
  maxDurationSeconds: number;
  /** Executions after a failed one (Kubernetes' backoffLimit). */
  maxRetries: number;
  /** CRON_JOB: the 5-field schedule (UTC). */
  schedule: string;
  /** LIFECYCLE_JOB: the event it runs for (also given to it as STAGELINE_JOB_EVENT). */
  event: 'DEPLOY' | 'STOP' | 'DELETE';
}

/** Where a job writes the JSON object whose values become variables of later stages. */
export const JOB_OUTPUT_DIR = '/stageline/output';
export const JOB_OUTPUT_FILE = `${JOB_OUTPUT_DIR}/output.json`;

export type Probe =
  | { type: 'http'; path: string; port: number }
  | { type: 'tcp'; port: number }
  | { type: 'exec'; command: string[] };

export interface WorkloadPort {
  port: number;
  public: boolean;
}

export interface WorkloadVolume {
  /** PersistentVolumeClaim name (a DNS subdomain). */
  claimName: string;
  mountPath: string;
  size: string;
}

export interface Workload {
  environmentId: string;
  environmentName: string;
  project: string;
  serviceId: string;
  /** The service name: a DNS label; names the Deployment, the Service and the chart. */
  name: string;
  /** The Helm release name (the service name, shortened to Helm's 53 characters when needed). */
  releaseName: string;
  kind: WorkloadKind;
  /** The image as the runtime pulls it (on `kubernetes`, from the mirror's pull address). */
  image: string;
  /** The version the image came from (commit or tag); recorded, never rendered into templates. */
  version: string;
  ports: WorkloadPort[];
  /** Plain variables (a ConfigMap), keys sorted. */
  env: Record<string, string>;
  /** Secret variables and values injected by earlier stages (a Secret), keys sorted. */
  secretEnv: Record<string, string>;
  /** Absent: "running" is ready (no ports and no health check). */
  probe: Probe | undefined;
  initialDelaySeconds: number;
  periodSeconds: number;
  readinessTimeoutSeconds: number;
  volume: WorkloadVolume | undefined;
  strategy: Strategy;
  /** LIFECYCLE_JOB and CRON_JOB only. */
  job: JobSpec | undefined;
  resources: { requests: { cpu: string; memory: string } };
  /** Seconds a container gets between SIGTERM and SIGKILL. */
  terminationGracePeriodSeconds: number;
  /** `kubernetes`: how public ports are reached from outside the cluster (CLUSTER_IP elsewhere). */
  exposure: Exposure;
  /** `kubernetes`: the Secrets the pods pull the image with (the authenticated mirror's). */
  imagePullSecrets: string[];
}

export const DEFAULT_READINESS_TIMEOUT_SECONDS = 300;
export const DEFAULT_JOB_MAX_DURATION_SECONDS = 300;
const DEFAULT_STRATEGY: Strategy = { type: 'RollingUpdate', maxSurge: '25%', maxUnavailable: '25%' };
export const DEFAULT_PERIOD_SECONDS = 2;
const DEFAULT_GRACE_SECONDS = 10;
const DEFAULT_REQUESTS = { cpu: '100m', memory: '128Mi' };

/** A database's connection details: what its service gets and what later stages receive. */
export interface DatabaseCredentials {
  username: string;
  password: string;
  database: string;
}

interface EngineInfo {
  port: number;
  dataPath: string;
  scheme: string;
  /** The official image's variables that create the user and database on first start. */
  env(c: DatabaseCredentials): Record<string, string>;
}

// Where each engine's official image keeps its data, the port it listens on, how it is configured.
export const DATABASE_ENGINES: Record<number, EngineInfo> = {
  [control.DatabaseEngine.DATABASE_ENGINE_POSTGRESQL]: {
    port: 5432,
    dataPath: '/var/lib/postgresql/data',
    scheme: 'postgresql',
    // PGDATA below the mount point: a fresh volume may hold lost+found, which initdb refuses.
    env: (c) => ({
      POSTGRES_USER: c.username,
      POSTGRES_PASSWORD: c.password,
      POSTGRES_DB: c.database,
      PGDATA: '/var/lib/postgresql/data/pgdata',
    }),
  },
  [control.DatabaseEngine.DATABASE_ENGINE_MYSQL]: {
    port: 3306,
    dataPath: '/var/lib/mysql',
    scheme: 'mysql',
    env: (c) => ({
      MYSQL_USER: c.username,
      MYSQL_PASSWORD: c.password,
      MYSQL_DATABASE: c.database,
      MYSQL_ROOT_PASSWORD: c.password,
    }),
  },
  [control.DatabaseEngine.DATABASE_ENGINE_REDIS]: {
    port: 6379,
    dataPath: '/data',
    scheme: 'redis',
    env: () => ({}),
  },
  [control.DatabaseEngine.DATABASE_ENGINE_MONGODB]: {
    port: 27017,
    dataPath: '/data/db',
    scheme: 'mongodb',
    env: (c) => ({
      MONGO_INITDB_ROOT_USERNAME: c.username,
      MONGO_INITDB_ROOT_PASSWORD: c.password,
      MONGO_INITDB_DATABASE: c.database,
    }),
  },
};

/** The prefix of a database's variables in later stages: its service name, upper snake case (`orders-db` → `ORDERS_DB`). */
export function outputPrefix(serviceName: string): string {
  return serviceName.toUpperCase().replace(/[^A-Z0-9]+/g, '_');
}

/**
 * Connection details as variables for later stages: `<PREFIX>_HOST`, `_PORT`, `_USER`,
 * `_PASSWORD`, `_DATABASE`, `_URL` — they reach the later services through their Secret.
 */
export function connectionOutputs(
  serviceName: string,
  engine: control.DatabaseEngine,
  at: { host: string; port: number },
  c: DatabaseCredentials,
): Record<string, string> {
  const info = DATABASE_ENGINES[engine];
  const scheme = info?.scheme ?? 'tcp';
  const auth = c.username === '' ? '' : `${encodeURIComponent(c.username)}:${encodeURIComponent(c.password)}@`;
  const path = c.database === '' ? '' : `/${encodeURIComponent(c.database)}`;
  const p = outputPrefix(serviceName);
  return {
    [`${p}_HOST`]: at.host,
    [`${p}_PORT`]: String(at.port),
    [`${p}_USER`]: c.username,
    [`${p}_PASSWORD`]: c.password,
    [`${p}_DATABASE`]: c.database,
    [`${p}_URL`]: `${scheme}://${auth}${at.host}:${at.port}${path}`,
  };
}

/** A MANAGED database (created on a configured server, not run as a workload). */
export function isManagedDatabase(service: control.Service | undefined): boolean {
  return (
    service?.kind === control.ServiceKind.SERVICE_KIND_DATABASE &&
    service.source?.$case === 'database' &&
    service.source.value.mode === control.DatabaseMode.DATABASE_MODE_MANAGED
  );
}

// Kubernetes accepts any printable name without '='; we keep to what every shell and runtime accepts.
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

function sortedRecord(entries: Iterable<[string, string]>): Record<string, string> {
  return Object.fromEntries([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function portsOf(service: control.Service): WorkloadPort[] {
  const source = service.source;
  switch (source?.$case) {
    case 'job':
      // A job serves nothing: no Service, no probe; its ports (if its image declares some) are not published.
      return [];
    case 'container':
      return source.value.ports.map((p) => ({ port: p.port, public: p.public }));
    case 'application':
      return source.value.ports.map((p) => ({ port: p.port, public: p.public }));
    case 'database': {
      const engine = DATABASE_ENGINES[source.value.engine];
      return engine === undefined ? [] : [{ port: engine.port, public: false }];
    }
    default:
      return [];
  }
}

function kindOf(service: control.Service): WorkloadKind {
  switch (service.kind) {
    case control.ServiceKind.SERVICE_KIND_CONTAINER:
      return 'CONTAINER';
    case control.ServiceKind.SERVICE_KIND_APPLICATION:
      return 'APPLICATION';
    case control.ServiceKind.SERVICE_KIND_DATABASE:
      if (
        service.source?.$case === 'database' &&
        service.source.value.mode === control.DatabaseMode.DATABASE_MODE_MANAGED
      ) {
        throw invalidArgument('service.database.mode', 'a MANAGED database is not deployed as a workload');
      }
      return 'DATABASE';
    case control.ServiceKind.SERVICE_KIND_LIFECYCLE_JOB:
      return 'LIFECYCLE_JOB';
    case control.ServiceKind.SERVICE_KIND_CRON_JOB:
      return 'CRON_JOB';
    default:
      throw invalidArgument('service.kind', `unsupported service kind ${service.kind}`);
  }
}

function probeOf(service: control.Service, ports: readonly WorkloadPort[]): Probe | undefined {
  const firstPort = ports[0]?.port;
  const probe = service.healthCheck?.probe;
  const portOr = (port: number, field: string): number => {
    const chosen = port !== 0 ? port : firstPort;
    if (chosen === undefined) throw invalidArgument(field, 'no port given and the service has no ports');
    return chosen;
  };
  switch (probe?.$case) {
    case 'http':
      return {
        type: 'http',
        path: probe.value.path === '' ? '/' : probe.value.path,
        port: portOr(probe.value.port, 'service.health_check.http.port'),
      };
    case 'tcp':
      return { type: 'tcp', port: portOr(probe.value.port, 'service.health_check.tcp.port') };
    case 'exec':
      if (probe.value.command.length === 0) {
        throw invalidArgument('service.health_check.exec.command', 'an exec probe needs a command');
      }
      return { type: 'exec', command: [...probe.value.command] };
    default:
      // Absent (Service.health_check): TCP on the first port, or "running" without ports.
      return firstPort === undefined ? undefined : { type: 'tcp', port: firstPort };
  }
}

function strategyOf(service: control.Service): Strategy {
  const s = service.strategy;
  if (s === undefined) return DEFAULT_STRATEGY;
  if (s.type === control.DeploymentStrategyType.DEPLOYMENT_STRATEGY_TYPE_RECREATE) return { type: 'Recreate' };
  const count = /^(0|[1-9][0-9]{0,3})%?$/;
  const maxSurge = s.maxSurge === '' ? '25%' : s.maxSurge;
  const maxUnavailable = s.maxUnavailable === '' ? '25%' : s.maxUnavailable;
  if (!count.test(maxSurge)) throw invalidArgument('service.strategy.max_surge', 'a count or a percentage');
  if (!count.test(maxUnavailable)) throw invalidArgument('service.strategy.max_unavailable', 'a count or a percentage');
  return { type: 'RollingUpdate', maxSurge, maxUnavailable };
}

// Kubernetes IntOrString: "25%" stays a string, "1" is the number 1.
export function intOrString(value: string): number | string {
  return value.endsWith('%') ? value : Number(value);
}

function eventOf(job: bus.DeployJob): JobSpec['event'] {
  const trigger = job.trigger === control.Action.ACTION_UNSPECIFIED ? job.action : job.trigger;
  if (trigger === control.Action.ACTION_STOP) return 'STOP';
  if (trigger === control.Action.ACTION_DELETE) return 'DELETE';
  return 'DEPLOY';
}

function jobSpecOf(job: bus.DeployJob, kind: WorkloadKind): JobSpec | undefined {
  if (kind !== 'LIFECYCLE_JOB' && kind !== 'CRON_JOB') return undefined;
  const source = job.service?.source;
  if (source?.$case !== 'job') throw invalidArgument('service.job', `a ${kind} needs its job source`);
  const j = source.value;
  const schedule = j.schedule.trim();
  if (kind === 'CRON_JOB') {
    try {
      parseCron(schedule);
    } catch (e) {
      throw invalidArgument('service.job.schedule', e instanceof Error ? e.message : String(e));
    }
  }
  return {
    maxDurationSeconds: j.maxDurationSeconds > 0 ? j.maxDurationSeconds : DEFAULT_JOB_MAX_DURATION_SECONDS,
    maxRetries: Math.min(j.maxRetries, 10),
    schedule: kind === 'CRON_JOB' ? schedule : '',
    event: eventOf(job),
  };
}

/** What the `kubernetes` runtime adds to a workload (the local runtime adds nothing). */
export interface KubernetesTarget {
  /** The mirror as jobs name it (push) and as the cluster's nodes reach it (pull). */
  mirror: MirrorAddresses;
  /** True when the mirror needs credentials: the pods name the namespace's pull secret. */
  pullSecret: boolean;
}

export interface WorkloadExtras {
  /** CONTAINER-mode databases: the user, password and database its image creates on first start. */
  database?: DatabaseCredentials;
  /** Rendering for the `kubernetes` runtime: pull address, pull secret, the job's exposure. */
  kubernetes?: KubernetesTarget;
}

/** Throws INVALID_ARGUMENT naming the field at fault. */
export function workloadFromJob(job: bus.DeployJob, extras: WorkloadExtras = {}): Workload {
  const service = job.service;
  if (service === undefined) throw invalidArgument('service', 'a deploy job needs its service');
  if (service.id === '') throw invalidArgument('service.id', 'required');
  if (!isDnsLabel(service.name)) throw invalidArgument('service.name', 'must be a DNS label');
  if (job.environmentId === '') throw invalidArgument('environment_id', 'required');
  if (job.image.trim() === '') throw invalidArgument('image', 'a DEPLOY job needs the image from the mirror');
  const kind = kindOf(service);

  const ports = portsOf(service);
  const seen = new Set<number>();
  for (const [i, p] of ports.entries()) {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) {
      throw invalidArgument(`service.ports[${i}].port`, 'must be 1..65535');
    }
    if (seen.has(p.port)) throw invalidArgument(`service.ports[${i}].port`, `duplicate port ${p.port}`);
    seen.add(p.port);
  }

  const plain = new Map<string, string>();
  const secret = new Map<string, string>();
  for (const [i, v] of service.envVars.entries()) {
    if (!ENV_KEY.test(v.key)) throw invalidArgument(`service.env_vars[${i}].key`, `invalid name "${v.key}"`);
    if (plain.has(v.key) || secret.has(v.key)) {
      throw invalidArgument(`service.env_vars[${i}].key`, `duplicate name "${v.key}"`);
    }
    (v.secret ? secret : plain).set(v.key, v.value);
  }
  // A container database's credentials: its image's own variables, kept secret.
  if (kind === 'DATABASE' && extras.database !== undefined && service.source?.$case === 'database') {
    const engineEnv = DATABASE_ENGINES[service.source.value.engine]?.env(extras.database) ?? {};
    for (const [key, value] of Object.entries(engineEnv)) {
      if (!plain.has(key) && !secret.has(key)) secret.set(key, value);
    }
  }
  const jobSpec = jobSpecOf(job, kind);
  if (jobSpec !== undefined && kind === 'LIFECYCLE_JOB' && !plain.has('STAGELINE_JOB_EVENT')) {
    plain.set('STAGELINE_JOB_EVENT', jobSpec.event);
  }
  // Values from earlier stages may carry credentials (database URLs): they go to the Secret. The
  // service's own definition wins over an injected value of the same name.
  for (const [key, value] of Object.entries(job.injectedEnv)) {
    if (!ENV_KEY.test(key)) throw invalidArgument('injected_env', `invalid name "${key}"`);
    if (!plain.has(key) && !secret.has(key)) secret.set(key, value);
  }

  const health = service.healthCheck;
  const periodSeconds =
    health !== undefined && health.periodSeconds > 0 ? health.periodSeconds : DEFAULT_PERIOD_SECONDS;
  const initialDelaySeconds = health?.initialDelaySeconds ?? 0;
  const readinessTimeoutSeconds =
    service.readinessTimeoutSeconds > 0 ? service.readinessTimeoutSeconds : DEFAULT_READINESS_TIMEOUT_SECONDS;

  let volume: WorkloadVolume | undefined;
  if (kind === 'DATABASE' && service.source?.$case === 'database') {
    const engine = DATABASE_ENGINES[service.source.value.engine];
    if (engine !== undefined) volume = { claimName: `${service.name}-data`, mountPath: engine.dataPath, size: '1Gi' };
  }

  const kube = extras.kubernetes;
  return {
    environmentId: job.environmentId,
    environmentName: job.environmentName,
    project: job.project,
    serviceId: service.id,
    name: service.name,
    releaseName: helmReleaseName(job.environmentId, service.name),
    kind,
    image: kube !== undefined ? pullImage(job.image.trim(), kube.mirror) : job.image.trim(),
    version: job.version,
    ports,
    env: sortedRecord(plain),
    secretEnv: sortedRecord(secret),
    probe: jobSpec !== undefined ? undefined : probeOf(service, ports),
    initialDelaySeconds,
    periodSeconds,
    readinessTimeoutSeconds,
    volume,
    // A ReadWriteOnce volume cannot be mounted by the old and the new pod at once.
    strategy: volume === undefined ? strategyOf(service) : { type: 'Recreate' },
    job: jobSpec,
    resources: { requests: { ...DEFAULT_REQUESTS } },
    terminationGracePeriodSeconds: DEFAULT_GRACE_SECONDS,
    // The local runtime publishes public ports on 127.0.0.1 itself; only a cluster needs to be told how.
    exposure: exposureOf(kube !== undefined ? job.exposure : undefined),
    imagePullSecrets: kube?.pullSecret === true ? [MIRROR_PULL_SECRET] : [],
  };
}

/** The digest of an image reference (`repo:tag@sha256:…`), or '' when it is named by tag only. */
export function imageDigest(image: string): string {
  const at = image.lastIndexOf('@');
  return at === -1 ? '' : image.slice(at + 1);
}
