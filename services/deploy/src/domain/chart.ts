// Chart generation (DESIGN.md §4): a real Helm chart directory whose templates are fully rendered, so
// `helm` installs it as it is (no Helm binary here to render) and the local runtime reads the same manifests.
import { createHash } from 'node:crypto';
import { invalidArgument } from '@stageline/errors';
import { stringify } from 'yaml';
import type { Probe, Workload } from './workload.ts';
import { imageDigest } from './workload.ts';

export interface ChartFile {
  /** Relative to the chart directory, `/`-separated. */
  path: string;
  content: string;
}

export interface Chart {
  name: string;
  revision: number;
  files: ChartFile[];
  /** SHA-256 (hex) of the rendered templates: equal iff what would be applied is equal. */
  configHash: string;
}

/** A Kubernetes object as we render it: only what we read back is typed. */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

export const LABELS = {
  name: 'app.kubernetes.io/name',
  instance: 'app.kubernetes.io/instance',
  managedBy: 'app.kubernetes.io/managed-by',
  environmentId: 'stageline.io/environment-id',
  serviceId: 'stageline.io/service-id',
} as const;

export const ANNOTATIONS = {
  /** On the Service: comma-separated container ports published outside the environment. */
  publicPorts: 'stageline.io/public-ports',
  /** On the Deployment: how long a rollout may take to become ready. */
  readinessTimeout: 'stageline.io/readiness-timeout-seconds',
  /** On the pod template: changes when an env value changes, so pods roll (envFrom/valueFrom do not). */
  configChecksum: 'stageline.io/config-checksum',
} as const;

const TEMPLATE_HEADER = '# Rendered by Stageline from values.yaml; installable by helm as it is.\n';

// Label values: at most 63 characters, alphanumeric at both ends.
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

function labelValue(field: string, value: string): string {
  if (!LABEL_VALUE.test(value)) throw invalidArgument(field, `"${value}" is not a valid label value`);
  return value;
}

function yaml(value: unknown): string {
  // lineWidth 0: never fold long strings (a folded env value would still parse, but diffs badly).
  return stringify(value, { lineWidth: 0 });
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function configMapName(w: Pick<Workload, 'name'>): string {
  return `${w.name}-env`;
}

export function secretName(w: Pick<Workload, 'name'>): string {
  return `${w.name}-secret`;
}

export function portName(port: number): string {
  // Port names are IANA_SVC_NAME: at most 15 characters, a letter among them.
  return `tcp-${port}`;
}

function probeHandler(probe: Probe): Record<string, unknown> {
  switch (probe.type) {
    case 'http':
      return { httpGet: { path: probe.path, port: probe.port, scheme: 'HTTP' } };
    case 'tcp':
      return { tcpSocket: { port: probe.port } };
    case 'exec':
      return { exec: { command: probe.command } };
  }
}

function probes(w: Workload): Record<string, unknown> {
  if (w.probe === undefined) return {};
  const handler = probeHandler(w.probe);
  const period = w.periodSeconds;
  return {
    // Startup gets the whole readiness budget; liveness only takes over once it succeeded, so a slow
    // start is never killed by liveness.
    startupProbe: {
      ...handler,
      initialDelaySeconds: w.initialDelaySeconds,
      periodSeconds: period,
      timeoutSeconds: 1,
      failureThreshold: Math.max(1, Math.ceil(w.readinessTimeoutSeconds / period)),
    },
    readinessProbe: {
      ...handler,
      initialDelaySeconds: w.initialDelaySeconds,
      periodSeconds: period,
      timeoutSeconds: 1,
      successThreshold: 1,
      failureThreshold: 3,
    },
    livenessProbe: {
      ...handler,
      periodSeconds: Math.max(period, 10),
      timeoutSeconds: 1,
      failureThreshold: 3,
    },
  };
}

function envEntries(w: Workload): Record<string, unknown>[] {
  const plain = Object.keys(w.env).map((key) => ({
    name: key,
    valueFrom: { configMapKeyRef: { name: configMapName(w), key } },
  }));
  const secret = Object.keys(w.secretEnv).map((key) => ({
    name: key,
    valueFrom: { secretKeyRef: { name: secretName(w), key } },
  }));
  return [...plain, ...secret];
}

/** The Kubernetes objects of a workload, in apply order. */
export function renderManifests(w: Workload): Manifest[] {
  const selector = {
    [LABELS.name]: w.name,
    [LABELS.instance]: w.releaseName,
  };
  const labels = {
    ...selector,
    [LABELS.managedBy]: 'Helm',
    [LABELS.environmentId]: labelValue('environment_id', w.environmentId),
    [LABELS.serviceId]: labelValue('service.id', w.serviceId),
  };
  const manifests: Manifest[] = [];

  let configMap: Manifest | undefined;
  if (Object.keys(w.env).length > 0) {
    configMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: configMapName(w), labels },
      data: { ...w.env },
    };
    manifests.push(configMap);
  }
  let secret: Manifest | undefined;
  if (Object.keys(w.secretEnv).length > 0) {
    secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: secretName(w), labels },
      type: 'Opaque',
      data: Object.fromEntries(
        Object.entries(w.secretEnv).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('base64')]),
      ),
    };
    manifests.push(secret);
  }
  if (w.volume !== undefined) {
    manifests.push({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: w.volume.claimName, labels },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: w.volume.size } } },
    });
  }
  if (w.ports.length > 0) {
    const publicPorts = w.ports.filter((p) => p.public).map((p) => p.port);
    manifests.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: {
        name: w.name,
        labels,
        ...(publicPorts.length > 0 ? { annotations: { [ANNOTATIONS.publicPorts]: publicPorts.join(',') } } : {}),
      },
      spec: {
        type: 'ClusterIP',
        selector,
        ports: w.ports.map((p) => ({
          name: portName(p.port),
          port: p.port,
          targetPort: portName(p.port),
          protocol: 'TCP',
        })),
      },
    });
  }

  const configChecksum = sha256(yaml([configMap ?? null, secret ?? null]));
  const env = envEntries(w);
  const container: Record<string, unknown> = {
    name: w.name,
    image: w.image,
    // A digest never changes meaning; a tag may have moved since the last pull.
    imagePullPolicy: imageDigest(w.image) === '' ? 'Always' : 'IfNotPresent',
    ...(w.ports.length > 0
      ? { ports: w.ports.map((p) => ({ name: portName(p.port), containerPort: p.port, protocol: 'TCP' })) }
      : {}),
    ...(env.length > 0 ? { env } : {}),
    resources: w.resources,
    ...probes(w),
    ...(w.volume !== undefined ? { volumeMounts: [{ name: 'data', mountPath: w.volume.mountPath }] } : {}),
  };
  manifests.push({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: w.name,
      labels,
      annotations: { [ANNOTATIONS.readinessTimeout]: String(w.readinessTimeoutSeconds) },
    },
    spec: {
      replicas: 1,
      revisionHistoryLimit: 10,
      progressDeadlineSeconds: Math.max(w.readinessTimeoutSeconds, 60),
      selector: { matchLabels: selector },
      strategy:
        w.strategy === 'RollingUpdate'
          ? { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } }
          : { type: 'Recreate' },
      template: {
        metadata: { labels, annotations: { [ANNOTATIONS.configChecksum]: configChecksum } },
        spec: {
          // Service links would add variables nobody asked for, and differ between environments.
          enableServiceLinks: false,
          terminationGracePeriodSeconds: w.terminationGracePeriodSeconds,
          containers: [container],
          ...(w.volume !== undefined
            ? { volumes: [{ name: 'data', persistentVolumeClaim: { claimName: w.volume.claimName } }] }
            : {}),
        },
      },
    },
  });
  return manifests;
}

const TEMPLATE_FILES: Record<string, string> = {
  ConfigMap: 'templates/configmap.yaml',
  Secret: 'templates/secret.yaml',
  PersistentVolumeClaim: 'templates/pvc.yaml',
  Service: 'templates/service.yaml',
  Deployment: 'templates/deployment.yaml',
};

/** SHA-256 over the templates' paths and contents, in path order. */
export function configHashOf(files: readonly ChartFile[]): string {
  const hash = createHash('sha256');
  const templates = files.filter((f) => f.path.startsWith('templates/')).sort((a, b) => (a.path < b.path ? -1 : 1));
  for (const file of templates) hash.update(`${file.path}\0${file.content}\0`);
  return hash.digest('hex');
}

function values(w: Workload, revision: number): Record<string, unknown> {
  return {
    revision,
    kind: w.kind,
    image: w.image,
    version: w.version,
    ports: w.ports,
    env: w.env,
    // Secret values live in templates/secret.yaml only; here just which keys exist.
    secretEnvKeys: Object.keys(w.secretEnv),
    healthCheck: w.probe ?? null,
    initialDelaySeconds: w.initialDelaySeconds,
    periodSeconds: w.periodSeconds,
    readinessTimeoutSeconds: w.readinessTimeoutSeconds,
    strategy: w.strategy,
    resources: w.resources,
    volume: w.volume ?? null,
  };
}

/** The whole chart of one revision. Pure: the same workload gives the same bytes. */
export function renderChart(w: Workload, revision: number): Chart {
  if (!Number.isInteger(revision) || revision < 1) throw invalidArgument('revision', 'must be 1 or more');
  const templates: ChartFile[] = renderManifests(w).map((m) => {
    const path = TEMPLATE_FILES[m.kind];
    if (path === undefined) throw new Error(`no template file for kind ${m.kind}`);
    return { path, content: TEMPLATE_HEADER + yaml(m) };
  });
  const chartYaml = {
    apiVersion: 'v2',
    name: w.name,
    description: `Stageline service ${w.name} of environment ${w.environmentName || w.environmentId}`,
    type: 'application',
    // SemVer is required; the revision makes every chart of a service distinct.
    version: `1.0.${revision}`,
    appVersion: w.version === '' ? imageDigest(w.image) || 'unknown' : w.version,
    annotations: {
      [LABELS.environmentId]: w.environmentId,
      [LABELS.serviceId]: w.serviceId,
      'stageline.io/revision': String(revision),
    },
  };
  const files: ChartFile[] = [
    { path: 'Chart.yaml', content: yaml(chartYaml) },
    {
      path: 'values.yaml',
      content: `# The inputs templates/ was rendered from (revision ${revision}).\n${yaml(values(w, revision))}`,
    },
    ...templates,
  ];
  return { name: w.name, revision, files, configHash: configHashOf(files) };
}
