// What one service runs as, derived from a deploy job: the single input of chart generation.
import { invalidArgument } from '@stageline/errors';
import type { bus } from '@stageline/proto';
import { control } from '@stageline/proto';
import { helmReleaseName, isDnsLabel } from './names.ts';

export type WorkloadKind = 'CONTAINER' | 'APPLICATION' | 'DATABASE';

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
  strategy: 'RollingUpdate' | 'Recreate';
  resources: { requests: { cpu: string; memory: string } };
  /** Seconds a container gets between SIGTERM and SIGKILL. */
  terminationGracePeriodSeconds: number;
}

export const DEFAULT_READINESS_TIMEOUT_SECONDS = 300;
export const DEFAULT_PERIOD_SECONDS = 2;
const DEFAULT_GRACE_SECONDS = 10;
const DEFAULT_REQUESTS = { cpu: '100m', memory: '128Mi' };

// Where each engine's official image keeps its data, and the port it listens on.
const DATABASE_ENGINES: Record<number, { port: number; dataPath: string }> = {
  [control.DatabaseEngine.DATABASE_ENGINE_POSTGRESQL]: { port: 5432, dataPath: '/var/lib/postgresql/data' },
  [control.DatabaseEngine.DATABASE_ENGINE_MYSQL]: { port: 3306, dataPath: '/var/lib/mysql' },
  [control.DatabaseEngine.DATABASE_ENGINE_REDIS]: { port: 6379, dataPath: '/data' },
  [control.DatabaseEngine.DATABASE_ENGINE_MONGODB]: { port: 27017, dataPath: '/data/db' },
};

// Kubernetes accepts any printable name without '='; we keep to what every shell and runtime accepts.
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

function sortedRecord(entries: Iterable<[string, string]>): Record<string, string> {
  return Object.fromEntries([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function portsOf(service: control.Service): WorkloadPort[] {
  const source = service.source;
  switch (source?.$case) {
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
    case control.ServiceKind.SERVICE_KIND_CRON_JOB:
      throw invalidArgument('service.kind', 'jobs are not deployable by the deploy service yet');
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
      // DESIGN.md: absent → TCP on the first port, or "running" without ports.
      return firstPort === undefined ? undefined : { type: 'tcp', port: firstPort };
  }
}

/** Throws INVALID_ARGUMENT naming the field at fault. */
export function workloadFromJob(job: bus.DeployJob): Workload {
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

  return {
    environmentId: job.environmentId,
    environmentName: job.environmentName,
    project: job.project,
    serviceId: service.id,
    name: service.name,
    releaseName: helmReleaseName(service.name),
    kind,
    image: job.image.trim(),
    version: job.version,
    ports,
    env: sortedRecord(plain),
    secretEnv: sortedRecord(secret),
    probe: probeOf(service, ports),
    initialDelaySeconds,
    periodSeconds,
    readinessTimeoutSeconds,
    volume,
    // A ReadWriteOnce volume cannot be mounted by the old and the new pod at once.
    strategy: volume === undefined ? 'RollingUpdate' : 'Recreate',
    resources: { requests: { ...DEFAULT_REQUESTS } },
    terminationGracePeriodSeconds: DEFAULT_GRACE_SECONDS,
  };
}

/** The digest of an image reference (`repo:tag@sha256:…`), or '' when it is named by tag only. */
export function imageDigest(image: string): string {
  const at = image.lastIndexOf('@');
  return at === -1 ? '' : image.slice(at + 1);
}
