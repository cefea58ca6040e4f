// Translation of a chart's manifests for `podman kube play` 4.3, which runs only Pods, Deployments and
// PersistentVolumeClaims (it ignores the rest without error): ConfigMap/Secret values become the
// container's environment, the Service becomes the environment network's alias plus published host ports,
// PVCs named volumes.
import { stringify } from 'yaml';
import { ANNOTATIONS, LABELS, type Manifest } from './chart.ts';
import { localNetworkName, localPodName, localVolumeName, localWorkloadName } from './names.ts';
import type { Probe } from './workload.ts';

export interface LocalVolume {
  name: string;
  labels: Record<string, string>;
}

export interface LocalPlan {
  serviceName: string;
  network: string;
  podName: string;
  /** podman's name for the service's container: `<pod>-<container>`. */
  containerName: string;
  image: string;
  /** The YAML handed to `podman kube play`. */
  kubeYaml: string;
  /** Named volumes the pod mounts; created before the play (kube play --replace fails on an existing PVC). */
  volumes: LocalVolume[];
  probe: Probe | undefined;
  initialDelaySeconds: number;
  periodSeconds: number;
  readinessTimeoutSeconds: number;
  stopTimeoutSeconds: number;
  /** Container ports that get a host port on 127.0.0.1, with the port each got. */
  published: { containerPort: number; hostPort: number }[];
  labels: Record<string, string>;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const asObj = (v: unknown): Obj => (isObj(v) ? v : {});
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const num = (v: unknown, fallback: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);

export class ChartError extends Error {
  override name = 'ChartError';
}

function only(manifests: readonly Manifest[], kind: string): Manifest[] {
  return manifests.filter((m) => m.kind === kind);
}

/** The public container ports a chart declares (on its Service), in order. */
export function publicPortsOf(manifests: readonly Manifest[]): number[] {
  const service = only(manifests, 'Service')[0];
  const value = service?.metadata.annotations?.[ANNOTATIONS.publicPorts];
  if (value === undefined || value === '') return [];
  return value.split(',').map((p) => Number(p.trim()));
}

function probeOf(spec: Obj): Probe | undefined {
  const httpGet = spec.httpGet;
  if (isObj(httpGet)) {
    return { type: 'http', path: typeof httpGet.path === 'string' ? httpGet.path : '/', port: num(httpGet.port, 0) };
  }
  const tcp = spec.tcpSocket;
  if (isObj(tcp)) return { type: 'tcp', port: num(tcp.port, 0) };
  const exec = spec.exec;
  if (isObj(exec)) return { type: 'exec', command: asArray(exec.command).map(String) };
  return undefined;
}

function dataOf(manifests: readonly Manifest[], kind: 'ConfigMap' | 'Secret'): Map<string, Record<string, string>> {
  const byName = new Map<string, Record<string, string>>();
  for (const m of only(manifests, kind)) {
    const data: Record<string, string> = {};
    for (const [k, v] of Object.entries(asObj(m.data))) {
      data[k] = kind === 'Secret' ? Buffer.from(String(v), 'base64').toString('utf8') : String(v);
    }
    if (kind === 'Secret') {
      for (const [k, v] of Object.entries(asObj(m.stringData))) data[k] = String(v);
    }
    byName.set(m.metadata.name, data);
  }
  return byName;
}

/** The container's env with every ConfigMap/Secret reference replaced by its value. */
function inlineEnv(container: Obj, manifests: readonly Manifest[]): { name: string; value: string }[] {
  const configMaps = dataOf(manifests, 'ConfigMap');
  const secrets = dataOf(manifests, 'Secret');
  const lookup = (source: Map<string, Record<string, string>>, ref: Obj, what: string): Record<string, string> => {
    const name = String(ref.name);
    const data = source.get(name);
    if (data === undefined && ref.optional !== true) throw new ChartError(`${what} "${name}" is not in the chart`);
    return data ?? {};
  };
  const env = new Map<string, string>();
  // envFrom first: explicit env entries win, as on Kubernetes.
  for (const from of asArray(container.envFrom).map(asObj)) {
    const prefix = typeof from.prefix === 'string' ? from.prefix : '';
    if (isObj(from.configMapRef)) {
      for (const [k, v] of Object.entries(lookup(configMaps, from.configMapRef, 'ConfigMap'))) env.set(prefix + k, v);
    }
    if (isObj(from.secretRef)) {
      for (const [k, v] of Object.entries(lookup(secrets, from.secretRef, 'Secret'))) env.set(prefix + k, v);
    }
  }
  for (const entry of asArray(container.env).map(asObj)) {
    const name = String(entry.name);
    if (typeof entry.value === 'string') {
      env.set(name, entry.value);
      continue;
    }
    const from = asObj(entry.valueFrom);
    const ref = isObj(from.configMapKeyRef)
      ? from.configMapKeyRef
      : isObj(from.secretKeyRef)
        ? from.secretKeyRef
        : null;
    if (ref === null) throw new ChartError(`env ${name}: only values and ConfigMap/Secret key references run locally`);
    const data = lookup(isObj(from.configMapKeyRef) ? configMaps : secrets, ref, 'reference');
    const value = data[String(ref.key)];
    if (value === undefined) {
      if (ref.optional === true) continue;
      throw new ChartError(`env ${name}: key "${String(ref.key)}" is missing from "${String(ref.name)}"`);
    }
    env.set(name, value);
  }
  return [...env].map(([name, value]) => ({ name, value }));
}

export interface LocalPlanInput {
  environmentId: string;
  manifests: readonly Manifest[];
  /** Host port for each public container port (see publicPortsOf). */
  hostPorts: ReadonlyMap<number, number>;
}

/** What kind of thing a chart runs: a long-running workload, a job run to completion, or a schedule. */
export function chartWorkloadKind(manifests: readonly Manifest[]): 'workload' | 'job' | 'cron' {
  if (only(manifests, 'CronJob').length > 0) return 'cron';
  if (only(manifests, 'Job').length > 0) return 'job';
  return 'workload';
}

/** Pure: manifests in, what podman is told out. Throws ChartError for a chart it cannot run locally. */
export function planLocal(input: LocalPlanInput): LocalPlan {
  const { environmentId, manifests } = input;
  // kube play 4.3 ignores StatefulSets: one runs as a Deployment with its claim templates as named volumes.
  const deployments = [...only(manifests, 'Deployment'), ...only(manifests, 'StatefulSet')];
  const deployment = deployments[0];
  if (deployment === undefined || deployments.length > 1) {
    throw new ChartError(
      `the local runtime runs charts with exactly one Deployment or StatefulSet (found ${deployments.length})`,
    );
  }
  const serviceName = deployment.metadata.name;
  const spec = asObj(deployment.spec);
  const template = asObj(spec.template);
  const podSpec = asObj(template.spec);
  const containers = asArray(podSpec.containers).map(asObj);
  const main = containers[0];
  if (main === undefined) throw new ChartError('the Deployment has no container');

  const publicPorts = new Set(publicPortsOf(manifests));
  const published: LocalPlan['published'] = [];
  const labels = { ...(deployment.metadata.labels ?? {}) };

  const localContainers = containers.map((c) => {
    const ports = asArray(c.ports)
      .map(asObj)
      .map((p) => {
        const containerPort = num(p.containerPort, 0);
        const hostPort = publicPorts.has(containerPort) ? input.hostPorts.get(containerPort) : undefined;
        if (publicPorts.has(containerPort) && hostPort === undefined) {
          throw new ChartError(`public port ${containerPort} has no host port`);
        }
        // podman 4.3 publishes a containerPort without hostPort on the host's same port, on every
        // interface: such a port stays off the list (the environment network reaches it anyway).
        if (hostPort === undefined) return undefined;
        published.push({ containerPort, hostPort });
        // Loopback only: Stageline hands out the port, nothing else on the network should reach it.
        return { containerPort, hostPort, hostIP: '127.0.0.1', protocol: 'TCP' };
      })
      .filter((p) => p !== undefined);
    const {
      startupProbe: _s,
      readinessProbe: _r,
      livenessProbe: _l,
      envFrom: _ef,
      env: _e,
      ports: _p,
      imagePullPolicy: _ipp,
      ...rest
    } = c;
    const env = inlineEnv(c, manifests);
    return {
      ...rest,
      // Probes are ours (podman's healthchecks need systemd timers); the image was pulled before the play.
      imagePullPolicy: 'IfNotPresent',
      ...(ports.length > 0 ? { ports } : {}),
      ...(env.length > 0 ? { env } : {}),
    };
  });
  for (const port of publicPorts) {
    if (!published.some((p) => p.containerPort === port)) {
      throw new ChartError(`public port ${port} is not a container port`);
    }
  }

  const volumes: LocalVolume[] = [];
  const localVolumes = asArray(podSpec.volumes)
    .map(asObj)
    .map((v) => {
      const claim = asObj(v.persistentVolumeClaim);
      if (typeof claim.claimName !== 'string') return v;
      const pvc = only(manifests, 'PersistentVolumeClaim').find((m) => m.metadata.name === claim.claimName);
      const name = localVolumeName(environmentId, claim.claimName);
      volumes.push({ name, labels: { ...(pvc?.metadata.labels ?? labels) } });
      return { ...v, persistentVolumeClaim: { ...claim, claimName: name } };
    });
  // A StatefulSet's claim templates: Kubernetes names the claim of pod 0 `<template>-<set>-0`.
  for (const template of asArray(spec.volumeClaimTemplates).map(asObj)) {
    const meta = asObj(template.metadata);
    const templateName = String(meta.name);
    const name = localVolumeName(environmentId, `${templateName}-${serviceName}-0`);
    const templateLabels = asObj(meta.labels) as Record<string, string>;
    volumes.push({ name, labels: { ...labels, ...templateLabels } });
    localVolumes.push({ name: templateName, persistentVolumeClaim: { claimName: name } });
  }

  const workloadName = localWorkloadName(environmentId, serviceName);
  const {
    terminationGracePeriodSeconds: grace,
    containers: _c,
    volumes: _v,
    enableServiceLinks: _esl,
    ...podRest
  } = podSpec;
  const kubeDeployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: workloadName, labels },
    spec: {
      // One pod: replicas > 1 with a hostPort fail with "address already in use" on podman.
      replicas: 1,
      selector: spec.selector,
      template: {
        metadata: template.metadata,
        spec: {
          ...podRest,
          // The pod's hostname is the service's name, whatever podman names the pod.
          hostname: serviceName,
          // catatonit is PID 1 and the app is not: a process that installs no SIGTERM handler (busybox
          // httpd, sleep) then stops at once instead of waiting for the stop timeout.
          shareProcessNamespace: true,
          restartPolicy: 'Always',
          containers: localContainers,
          ...(localVolumes.length > 0 ? { volumes: localVolumes } : {}),
        },
      },
    },
  };

  const readiness = asObj(main.readinessProbe);
  const timeoutAnnotation = deployment.metadata.annotations?.[ANNOTATIONS.readinessTimeout];
  const readinessTimeoutSeconds = Number(timeoutAnnotation ?? spec.progressDeadlineSeconds ?? 300);
  return {
    serviceName,
    network: localNetworkName(environmentId),
    podName: localPodName(environmentId, serviceName),
    containerName: `${localPodName(environmentId, serviceName)}-${String(main.name)}`,
    image: String(main.image),
    kubeYaml: `# podman kube play input generated by Stageline from the chart of ${serviceName}\n${stringify(kubeDeployment, { lineWidth: 0 })}`,
    volumes,
    probe: probeOf(readiness),
    initialDelaySeconds: num(readiness.initialDelaySeconds, 0),
    periodSeconds: Math.max(1, num(readiness.periodSeconds, 2)),
    readinessTimeoutSeconds: Number.isFinite(readinessTimeoutSeconds) ? readinessTimeoutSeconds : 300,
    stopTimeoutSeconds: num(grace, 10),
    published,
    labels: {
      [LABELS.environmentId]: labels[LABELS.environmentId] ?? environmentId,
      ...(labels[LABELS.serviceId] !== undefined ? { [LABELS.serviceId]: labels[LABELS.serviceId] } : {}),
    },
  };
}

export interface LocalJobPlan {
  serviceName: string;
  network: string;
  podName: string;
  containerName: string;
  image: string;
  kubeYaml: string;
  /** Seconds one execution may run (the pod's activeDeadlineSeconds). */
  maxDurationSeconds: number;
  /** Executions after a failed one (the Job's backoffLimit). */
  maxRetries: number;
  stopTimeoutSeconds: number;
  labels: Record<string, string>;
}

export interface LocalJobInput {
  environmentId: string;
  manifests: readonly Manifest[];
  /** Names this execution's pod: a revision ("r3"), or a cron tick ("t202611270405"). */
  runName: string;
  /** The host directory mounted at the job's output directory. */
  outputDir: string;
  /** Where the job writes output.json inside its container. */
  outputMountPath: string;
}

/**
 * A Job (or a CronJob's job template) as one pod for `podman kube play`: run once, never restarted by
 * podman (the runtime retries it), its output directory a host directory the runtime reads afterwards.
 */
export function planLocalJob(input: LocalJobInput): LocalJobPlan {
  const { environmentId, manifests } = input;
  const cron = only(manifests, 'CronJob')[0];
  const job = only(manifests, 'Job')[0];
  const owner = cron ?? job;
  if (owner === undefined) throw new ChartError('the chart has no Job or CronJob');
  const jobSpec = cron !== undefined ? asObj(asObj(asObj(cron.spec).jobTemplate).spec) : asObj(job?.spec);
  const template = asObj(jobSpec.template);
  const podSpec = asObj(template.spec);
  const containers = asArray(podSpec.containers).map(asObj);
  const main = containers[0];
  if (main === undefined) throw new ChartError('the job has no container');
  const serviceName = String(owner.metadata.labels?.[LABELS.name] ?? owner.metadata.name);
  const labels: Record<string, string> = {
    ...(owner.metadata.labels ?? {}),
    ...(asObj(asObj(template.metadata).labels) as Record<string, string>),
    [LABELS.jobRun]: input.runName,
  };
  const localContainers = containers.map((c) => {
    const {
      startupProbe: _s,
      readinessProbe: _r,
      livenessProbe: _l,
      envFrom: _ef,
      env: _e,
      ports: _p,
      imagePullPolicy: _ipp,
      terminationMessagePath: _tmp,
      terminationMessagePolicy: _tmpo,
      volumeMounts,
      ...rest
    } = c;
    const env = inlineEnv(c, manifests);
    return {
      ...rest,
      imagePullPolicy: 'IfNotPresent',
      ...(env.length > 0 ? { env } : {}),
      volumeMounts: [
        ...asArray(volumeMounts),
        ...(c === main ? [{ name: 'stageline-output', mountPath: input.outputMountPath }] : []),
      ],
    };
  });
  const podName = `${localWorkloadName(environmentId, serviceName)}-${input.runName}`;
  const {
    terminationGracePeriodSeconds: grace,
    activeDeadlineSeconds: deadline,
    containers: _c,
    volumes,
    enableServiceLinks: _esl,
    restartPolicy: _rp,
    ...podRest
  } = podSpec;
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: podName, labels },
    spec: {
      ...podRest,
      hostname: serviceName,
      shareProcessNamespace: true,
      restartPolicy: 'Never',
      containers: localContainers,
      volumes: [
        ...asArray(volumes),
        { name: 'stageline-output', hostPath: { path: input.outputDir, type: 'DirectoryOrCreate' } },
      ],
    },
  };
  const retries = Number(owner.metadata.annotations?.[ANNOTATIONS.maxRetries] ?? jobSpec.backoffLimit ?? 0);
  return {
    serviceName,
    network: localNetworkName(environmentId),
    podName,
    containerName: `${podName}-${String(main.name)}`,
    image: String(main.image),
    kubeYaml: `# podman kube play input generated by Stageline from the chart of ${serviceName}\n${stringify(pod, { lineWidth: 0 })}`,
    maxDurationSeconds: num(deadline, 300),
    maxRetries: Number.isInteger(retries) && retries >= 0 ? Math.min(retries, 10) : 0,
    stopTimeoutSeconds: num(grace, 10),
    labels: {
      [LABELS.environmentId]: labels[LABELS.environmentId] ?? environmentId,
      ...(labels[LABELS.serviceId] !== undefined ? { [LABELS.serviceId]: labels[LABELS.serviceId] } : {}),
      [LABELS.jobRun]: input.runName,
    },
  };
}

/** The cron schedule a chart's CronJob carries ('' when it has none). */
export function cronScheduleOf(manifests: readonly Manifest[]): string {
  const cron = only(manifests, 'CronJob')[0];
  const schedule = asObj(cron?.spec).schedule;
  return typeof schedule === 'string' ? schedule : '';
}
