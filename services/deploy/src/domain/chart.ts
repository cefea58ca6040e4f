// Chart generation: a real Helm chart directory whose templates are fully rendered, so `helm` installs it
// as it is (no Helm binary here to render) and the local runtime reads the same manifests.
import { createHash } from 'node:crypto';
import { invalidArgument } from '@stageline/errors';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { ICronJob } from 'kubernetes-models/batch/v1/CronJob';
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IIngress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import type { IIngressRule } from 'kubernetes-models/networking.k8s.io/v1/IngressRule';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { IPersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import type { IPodTemplateSpec } from 'kubernetes-models/v1/PodTemplateSpec';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import { stringify } from 'yaml';
import { ingressHost, publicServiceName } from './kube-target.ts';
import type { Probe, Workload } from './workload.ts';
import { imageDigest, intOrString, JOB_OUTPUT_FILE } from './workload.ts';

export interface ChartFile {
  /** Relative to the chart directory, `/`-separated. */
  path: string;
  content: string;
  /** Holds secret values (the Secret, a custom chart's values): the chart store keeps it sealed at rest. */
  sensitive?: boolean;
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
  /** On the pods of a job's run on the local runtime: which run (a revision, or a cron tick). */
  jobRun: 'stageline.io/job-run',
} as const;

export const ANNOTATIONS = {
  /** On the Service: comma-separated container ports published outside the environment. */
  publicPorts: 'stageline.io/public-ports',
  /** On the Deployment: how long a rollout may take to become ready. */
  readinessTimeout: 'stageline.io/readiness-timeout-seconds',
  /** On the pod template: changes when an env value changes, so pods roll (envFrom/valueFrom do not). */
  configChecksum: 'stageline.io/config-checksum',
  /** On a Job or CronJob: the retries after a failed execution (also the Job's backoffLimit). */
  maxRetries: 'stageline.io/max-retries',
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

function probeHandler(probe: Probe): Pick<IProbe, 'httpGet' | 'tcpSocket' | 'exec'> {
  switch (probe.type) {
    case 'http':
      return { httpGet: { path: probe.path, port: probe.port, scheme: 'HTTP' } };
    case 'tcp':
      return { tcpSocket: { port: probe.port } };
    case 'exec':
      return { exec: { command: probe.command } };
  }
}

function probes(w: Workload): Pick<IContainer, 'startupProbe' | 'readinessProbe' | 'livenessProbe'> {
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

function envEntries(w: Workload): IEnvVar[] {
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

// Typed objects (the Kubernetes API's own types catch unknown fields at compile time) as read back.
const asManifest = (o: object): Manifest => o as Manifest;

/** The name of a lifecycle job's Job: a new one per revision, so every DEPLOY (STOP, DELETE) runs it again. */
export function jobName(w: Pick<Workload, 'name'>, revision: number): string {
  return `${w.name}-${revision}`.slice(0, 63);
}

/** The Kubernetes objects of a workload, in apply order. `revision` names a lifecycle job's Job. */
export function renderManifests(w: Workload, revision = 1): Manifest[] {
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

  let configMap: IConfigMap | undefined;
  if (Object.keys(w.env).length > 0) {
    configMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: configMapName(w), labels },
      data: { ...w.env },
    };
    manifests.push(asManifest(configMap));
  }
  let secret: ISecret | undefined;
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
    manifests.push(asManifest(secret));
  }
  if (w.ports.length > 0 && w.job === undefined) {
    const publicPorts = w.ports.filter((p) => p.public).map((p) => p.port);
    const service: IService = {
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
    };
    manifests.push(asManifest(service));
    manifests.push(...exposureManifests(w, labels, selector));
  }

  const configChecksum = sha256(yaml([configMap ?? null, secret ?? null]));
  const env = envEntries(w);
  const container: IContainer = {
    name: w.name,
    image: w.image,
    // A digest never changes meaning; a tag may have moved since the last pull.
    imagePullPolicy: imageDigest(w.image) === '' ? 'Always' : 'IfNotPresent',
    ...(w.ports.length > 0 && w.job === undefined
      ? { ports: w.ports.map((p) => ({ name: portName(p.port), containerPort: p.port, protocol: 'TCP' })) }
      : {}),
    ...(env.length > 0 ? { env } : {}),
    resources: w.resources,
    ...probes(w),
    ...(w.volume !== undefined ? { volumeMounts: [{ name: 'data', mountPath: w.volume.mountPath }] } : {}),
    // A job's output.json comes back as its termination message: Kubernetes keeps it in the pod status
    // (up to 4 KiB) after the container exited, where the deploy service reads it.
    ...(w.job !== undefined ? { terminationMessagePath: JOB_OUTPUT_FILE, terminationMessagePolicy: 'File' } : {}),
  };
  const podTemplate = (extraLabels: Record<string, string> = {}): IPodTemplateSpec => ({
    metadata: { labels: { ...labels, ...extraLabels }, annotations: { [ANNOTATIONS.configChecksum]: configChecksum } },
    spec: {
      // Service links would add variables nobody asked for, and differ between environments.
      enableServiceLinks: false,
      terminationGracePeriodSeconds: w.terminationGracePeriodSeconds,
      containers: [container],
      ...(w.imagePullSecrets.length > 0 ? { imagePullSecrets: w.imagePullSecrets.map((name) => ({ name })) } : {}),
      // A job's pod runs once; a failed execution is retried by the Job (backoffLimit), each within its limit.
      ...(w.job !== undefined ? { restartPolicy: 'Never', activeDeadlineSeconds: w.job.maxDurationSeconds } : {}),
    },
  });
  const workloadMeta = {
    name: w.name,
    labels,
    annotations: { [ANNOTATIONS.readinessTimeout]: String(w.readinessTimeoutSeconds) },
  };

  switch (w.kind) {
    case 'DATABASE': {
      // A StatefulSet: its volume claim outlives pods and upgrades; STOP scales it to zero, DELETE
      // (helm uninstall) removes the release and the claim with it.
      const volume = w.volume;
      const statefulSet: IStatefulSet = {
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: workloadMeta,
        spec: {
          replicas: 1,
          serviceName: w.name,
          revisionHistoryLimit: 10,
          selector: { matchLabels: selector },
          updateStrategy: { type: 'RollingUpdate' },
          persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Delete', whenScaled: 'Retain' },
          template: podTemplate(),
          ...(volume !== undefined
            ? {
                volumeClaimTemplates: [
                  {
                    apiVersion: 'v1',
                    kind: 'PersistentVolumeClaim',
                    metadata: { name: 'data', labels },
                    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: volume.size } } },
                  } satisfies IPersistentVolumeClaim,
                ],
              }
            : {}),
        },
      };
      manifests.push(asManifest(statefulSet));
      break;
    }
    case 'LIFECYCLE_JOB': {
      const job: IJob = {
        apiVersion: 'batch/v1',
        kind: 'Job',
        metadata: {
          name: jobName(w, revision),
          labels,
          annotations: { [ANNOTATIONS.maxRetries]: String(w.job?.maxRetries ?? 0) },
        },
        spec: {
          backoffLimit: w.job?.maxRetries ?? 0,
          template: podTemplate(),
        },
      };
      manifests.push(asManifest(job));
      break;
    }
    case 'CRON_JOB': {
      const cronJob: ICronJob = {
        apiVersion: 'batch/v1',
        kind: 'CronJob',
        metadata: { name: w.name, labels, annotations: { [ANNOTATIONS.maxRetries]: String(w.job?.maxRetries ?? 0) } },
        spec: {
          schedule: w.job?.schedule ?? '',
          // The same 5-field schedule on every runtime: the local scheduler reads it as UTC too.
          timeZone: 'Etc/UTC',
          concurrencyPolicy: 'Allow',
          suspend: false,
          // A tick missed by more than this (controller down) is not run late; the local scheduler agrees.
          startingDeadlineSeconds: CRON_STARTING_DEADLINE_SECONDS,
          successfulJobsHistoryLimit: 3,
          failedJobsHistoryLimit: 3,
          jobTemplate: {
            metadata: { labels },
            spec: { backoffLimit: w.job?.maxRetries ?? 0, template: podTemplate() },
          },
        },
      };
      manifests.push(asManifest(cronJob));
      break;
    }
    case 'CONTAINER':
    case 'APPLICATION': {
      const strategy = w.strategy;
      const deployment: IDeployment = {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: workloadMeta,
        spec: {
          replicas: 1,
          revisionHistoryLimit: 10,
          progressDeadlineSeconds: Math.max(w.readinessTimeoutSeconds, 60),
          selector: { matchLabels: selector },
          strategy:
            strategy.type === 'RollingUpdate'
              ? {
                  type: 'RollingUpdate',
                  rollingUpdate: {
                    maxSurge: intOrString(strategy.maxSurge),
                    maxUnavailable: intOrString(strategy.maxUnavailable),
                  },
                }
              : { type: 'Recreate' },
          template: podTemplate(),
        },
      };
      manifests.push(asManifest(deployment));
      break;
    }
  }
  return manifests;
}

/**
 * How the public ports of a workload with a Service are reached from outside the cluster: a Service of
 * their own (NodePort, LoadBalancer) beside the ClusterIP one, or an Ingress to the ClusterIP one.
 */
function exposureManifests(w: Workload, labels: Record<string, string>, selector: Record<string, string>): Manifest[] {
  const publicPorts = w.ports.filter((p) => p.public).map((p) => p.port);
  const e = w.exposure;
  if (publicPorts.length === 0 || e.type === 'CLUSTER_IP') return [];
  if (e.type === 'NODE_PORT' || e.type === 'LOAD_BALANCER') {
    const service: IService = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: publicServiceName(w.name), labels },
      spec: {
        type: e.type === 'NODE_PORT' ? 'NodePort' : 'LoadBalancer',
        selector,
        // The node port (or balancer) is the cluster's to choose: a fixed one would collide across environments.
        ports: publicPorts.map((port) => ({ name: portName(port), port, targetPort: portName(port), protocol: 'TCP' })),
      },
    };
    return [asManifest(service)];
  }
  const rules = publicPorts.map(
    (port, i): IIngressRule => ({
      host: ingressHost(w.name, port, i === 0, e.ingressDomain),
      http: {
        paths: [
          {
            path: '/',
            pathType: 'Prefix',
            backend: { service: { name: w.name, port: { name: portName(port) } } },
          },
        ],
      },
    }),
  );
  const ingress: IIngress = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: { name: w.name, labels },
    spec: {
      ...(e.ingressClass !== '' ? { ingressClassName: e.ingressClass } : {}),
      ...(e.tlsSecret !== '' ? { tls: [{ hosts: rules.map((r) => r.host ?? ''), secretName: e.tlsSecret }] } : {}),
      rules,
    },
  };
  return [asManifest(ingress)];
}

/** How late a missed cron tick may still start (CronJob startingDeadlineSeconds; the local scheduler too). */
export const CRON_STARTING_DEADLINE_SECONDS = 300;

const TEMPLATE_FILES: Record<string, string> = {
  ConfigMap: 'templates/configmap.yaml',
  Secret: 'templates/secret.yaml',
  PersistentVolumeClaim: 'templates/pvc.yaml',
  Service: 'templates/service.yaml',
  Ingress: 'templates/ingress.yaml',
  Deployment: 'templates/deployment.yaml',
  StatefulSet: 'templates/statefulset.yaml',
  Job: 'templates/job.yaml',
  CronJob: 'templates/cronjob.yaml',
};

/** The template file of a manifest kind (a chart holds at most one object of each kind but Service). */
export function templateFileOf(kind: string): string {
  const path = TEMPLATE_FILES[kind];
  if (path === undefined) throw new Error(`no template file for kind ${kind}`);
  return path;
}

/** The template file of a manifest: the public Service beside the ClusterIP one has its own. */
function templateFileOfManifest(m: Manifest): string {
  const service = m.metadata.labels?.[LABELS.name] ?? '';
  return m.kind === 'Service' && m.metadata.name === publicServiceName(service)
    ? 'templates/service-public.yaml'
    : templateFileOf(m.kind);
}

// Helm runs every file under templates/ through Go's text/template, so a user's string holding `{{`
// (an env value `{{ lookup "v1" "Secret" "kube-system" "" }}` would read the cluster's secrets with
// the deploy worker's credentials; a lone `{{` breaks the install) must never reach it as an action.
// Every `{{` of a rendered template is written as the action `{{"{{"}}`, which prints `{{`: Helm turns
// the file back into exactly the text we rendered, and nothing else is ever an action.
const OPEN = '{{';
const ESCAPED_OPEN = '{{"{{"}}';

/** What Helm's template engine turns back into `text`: every `{{` written as `{{"{{"}}`. */
export function escapeForHelm(text: string): string {
  return text.replaceAll(OPEN, ESCAPED_OPEN);
}

/**
 * What Helm renders from a template file Stageline wrote: each `{{"{{"}}` action prints `{{`. Any
 * other action means the file was not written by `escapeForHelm` (or was altered): refused, never run.
 */
export function renderEscapedTemplate(file: string, text: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const next = text.indexOf(OPEN, at);
    if (next === -1) return out + text.slice(at);
    if (!text.startsWith(ESCAPED_OPEN, next)) {
      throw new Error(`${file}: a template action other than Stageline's escape at offset ${next}: refusing it`);
    }
    out += text.slice(at, next) + OPEN;
    at = next + ESCAPED_OPEN.length;
  }
}

/** A template file's content: the header, then the object, with every `{{` escaped for Helm. */
export function templateContent(manifest: unknown): string {
  return escapeForHelm(TEMPLATE_HEADER + yaml(manifest));
}

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
    job: w.job ?? null,
    exposure: w.exposure,
    imagePullSecrets: w.imagePullSecrets,
  };
}

/** The whole chart of one revision. Pure: the same workload gives the same bytes. */
export function renderChart(w: Workload, revision: number): Chart {
  if (!Number.isInteger(revision) || revision < 1) throw invalidArgument('revision', 'must be 1 or more');
  const templates: ChartFile[] = renderManifests(w, revision).map((m) => ({
    path: templateFileOfManifest(m),
    content: templateContent(m),
    ...(m.kind === 'Secret' ? { sensitive: true } : {}),
  }));
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
  // A lifecycle job's Job is named after its revision (so it runs again): the hash ignores that name.
  const hashed =
    w.kind === 'LIFECYCLE_JOB'
      ? renderManifests(w, 0).map((m) => ({ path: templateFileOfManifest(m), content: templateContent(m) }))
      : files;
  return { name: w.name, revision, files, configHash: configHashOf(hashed) };
}
