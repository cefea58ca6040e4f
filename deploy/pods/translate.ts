// Stageline's own rendered Kubernetes manifests, translated into what `podman kube play` 4.3 runs: it
// runs only Pods, Deployments and PersistentVolumeClaims and ignores every other kind without error, maps
// no readiness probe, and needs systemd for liveness probes. So, as services/deploy does for users'
// charts (its local-plan), but for a whole installation:
// - a Deployment becomes a Pod (one replica: on the host's network a second binds the same ports), a Job
//   a Pod that runs once (restartPolicy Never) and is waited for, an init container such a pod too, run
//   before its own (podman 4.3 restarts init containers under restartPolicy Always, then fails);
// - ConfigMap and Secret values become the container's environment (envFrom, valueFrom) and, mounted as
//   volumes, files in a host directory (modes as Kubernetes sets them, group fsGroup); an emptyDir a host
//   directory too;
// - probes are removed, and the readiness probe's URL returned for the caller to poll;
// - a Service is checked, not run: on the host's network its port must be the one its pods listen on;
// - HorizontalPodAutoscalers, PodDisruptionBudgets and Namespaces are reported as ignored; any other kind
//   is an error (podman would skip it silently).
// Pure: the caller writes the directories and runs podman.
import path from 'node:path';
import { stringify } from 'yaml';

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

export interface HostFile {
  name: string;
  content: Buffer;
  mode: number;
}

/** A directory the caller creates (and fills) before the pods start. */
export interface HostDir {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  files: HostFile[];
}

export interface PodPlan {
  /** The pod's name in podman (`<prefix><manifest name>`). */
  name: string;
  /** What it came from: `Deployment/control`. */
  source: string;
  /** The single-document YAML handed to `podman kube play`. */
  yaml: string;
  /** Its containers' names, as podman names them (`<pod>-<container>`). */
  containers: string[];
  /** The readiness probe of its first container that has one, as a URL on the host. */
  readiness: string | undefined;
  /** Its init containers, each a pod of its own to run to completion first, in order. */
  init: PodPlan[];
}

export interface PodsPlan {
  /** Pods that run to completion first (Jobs), in manifest order. */
  jobs: PodPlan[];
  /** The long-running pods (Deployments), in manifest order. */
  workloads: PodPlan[];
  dirs: HostDir[];
  /** `Service/control: 127.0.0.1:31051`. */
  services: string[];
  /** `HorizontalPodAutoscaler/build: …why`. */
  ignored: string[];
}

export interface TranslateOptions {
  /** Host directory under which volumes become directories (`<root>/<pod>/<volume>`). Absolute. */
  volumeRoot: string;
  /** Prefix of every pod's name, so that they never meet a user's environment's pods. */
  podPrefix: string;
}

export class TranslationError extends Error {
  override name = 'TranslationError';
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const asObj = (v: unknown): Obj => (isObj(v) ? v : {});
const asArray = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

const IGNORED: Record<string, string> = {
  HorizontalPodAutoscaler: 'podman runs no autoscaler (one replica each here)',
  PodDisruptionBudget: 'no voluntary disruptions on one machine',
  Namespace: 'podman has no namespaces',
  ServiceAccount: 'no Kubernetes API here',
};
const DATA_KINDS = new Set(['ConfigMap', 'Secret']);
const PROBES = ['readinessProbe', 'livenessProbe', 'startupProbe'] as const;

/** ConfigMap/Secret values by name, decoded. */
function dataByName(manifests: readonly Manifest[], kind: 'ConfigMap' | 'Secret'): Map<string, Map<string, Buffer>> {
  const out = new Map<string, Map<string, Buffer>>();
  for (const m of manifests) {
    if (m.kind !== kind) continue;
    const values = new Map<string, Buffer>();
    for (const [k, v] of Object.entries(asObj(m.data))) {
      values.set(k, kind === 'Secret' ? Buffer.from(String(v), 'base64') : Buffer.from(String(v)));
    }
    for (const [k, v] of Object.entries(asObj(m.binaryData))) values.set(k, Buffer.from(String(v), 'base64'));
    for (const [k, v] of Object.entries(asObj(m.stringData))) values.set(k, Buffer.from(String(v)));
    out.set(m.metadata.name, values);
  }
  return out;
}

interface Context {
  configMaps: Map<string, Map<string, Buffer>>;
  secrets: Map<string, Map<string, Buffer>>;
  options: TranslateOptions;
}

function source(ctx: Context, kind: string): Map<string, Map<string, Buffer>> {
  return kind === 'Secret' ? ctx.secrets : ctx.configMaps;
}

/** The container's environment with every envFrom and valueFrom resolved; explicit `env` wins, as in Kubernetes. */
function resolveEnv(ctx: Context, where: string, container: Obj): { name: string; value: string }[] {
  const env = new Map<string, string>();
  for (const from of asArray(container.envFrom)) {
    const f = asObj(from);
    const ref = isObj(f.configMapRef)
      ? { kind: 'ConfigMap', ref: f.configMapRef }
      : { kind: 'Secret', ref: asObj(f.secretRef) };
    const name = str(ref.ref.name) ?? '';
    const values = source(ctx, ref.kind).get(name);
    if (values === undefined) {
      if (ref.ref.optional === true) continue;
      throw new TranslationError(`${where}: envFrom names ${ref.kind} ${name}, which the manifests do not hold`);
    }
    const prefix = str(f.prefix) ?? '';
    for (const [k, v] of values) env.set(`${prefix}${k}`, v.toString('utf8'));
  }
  for (const item of asArray(container.env)) {
    const e = asObj(item);
    const name = str(e.name) ?? '';
    if (e.valueFrom === undefined) {
      env.set(name, str(e.value) ?? '');
      continue;
    }
    const from = asObj(e.valueFrom);
    const keyRef = isObj(from.secretKeyRef)
      ? { kind: 'Secret', ref: from.secretKeyRef }
      : isObj(from.configMapKeyRef)
        ? { kind: 'ConfigMap', ref: from.configMapKeyRef }
        : undefined;
    if (keyRef === undefined) {
      throw new TranslationError(`${where}: env ${name}: only secretKeyRef and configMapKeyRef can be resolved here`);
    }
    const refName = str(keyRef.ref.name) ?? '';
    const key = str(keyRef.ref.key) ?? '';
    const value = source(ctx, keyRef.kind).get(refName)?.get(key);
    if (value === undefined) {
      if (keyRef.ref.optional === true) {
        env.delete(name);
        continue;
      }
      throw new TranslationError(`${where}: env ${name}: ${keyRef.kind} ${refName} has no key "${key}"`);
    }
    env.set(name, value.toString('utf8'));
  }
  return [...env].map(([name, value]) => ({ name, value }));
}

/** Secret, ConfigMap and emptyDir volumes as host directories; hostPath and PVCs as they are. */
function resolveVolumes(ctx: Context, where: string, podName: string, spec: Obj, dirs: HostDir[]): Obj[] {
  const fsGroup = asObj(spec.securityContext).fsGroup;
  const gid = typeof fsGroup === 'number' ? fsGroup : 0;
  return asArray(spec.volumes).map((item) => {
    const volume = asObj(item);
    const name = str(volume.name) ?? '';
    const dir = path.join(ctx.options.volumeRoot, podName, name);
    const asHostPath = { name, hostPath: { path: dir, type: 'Directory' } };
    if (isObj(volume.hostPath) || isObj(volume.persistentVolumeClaim)) return volume;
    if (isObj(volume.emptyDir)) {
      // Kubernetes makes an emptyDir world-writable; so does this.
      dirs.push({ path: dir, mode: 0o777, uid: 0, gid, files: [] });
      return asHostPath;
    }
    const kind = isObj(volume.secret) ? 'Secret' : isObj(volume.configMap) ? 'ConfigMap' : undefined;
    if (kind === undefined) {
      throw new TranslationError(
        `${where}: volume ${name}: only secret, configMap, emptyDir, hostPath and PVC volumes run here`,
      );
    }
    const ref = asObj(kind === 'Secret' ? volume.secret : volume.configMap);
    const refName = str(kind === 'Secret' ? ref.secretName : ref.name) ?? '';
    const defaultMode = typeof ref.defaultMode === 'number' ? ref.defaultMode : 0o644;
    const values = source(ctx, kind).get(refName);
    const files: HostFile[] = [];
    if (values === undefined) {
      if (ref.optional !== true) {
        throw new TranslationError(
          `${where}: volume ${name} names ${kind} ${refName}, which the manifests do not hold`,
        );
      }
    } else if (ref.items !== undefined) {
      for (const entry of asArray(ref.items)) {
        const it = asObj(entry);
        const key = str(it.key) ?? '';
        const content = values.get(key);
        if (content === undefined)
          throw new TranslationError(`${where}: volume ${name}: ${kind} ${refName} has no key "${key}"`);
        files.push({ name: str(it.path) ?? key, content, mode: typeof it.mode === 'number' ? it.mode : defaultMode });
      }
    } else {
      for (const [key, content] of values) files.push({ name: key, content, mode: defaultMode });
    }
    for (const file of files) {
      if (file.name.split('/').some((part) => part === '..' || part === '') || path.isAbsolute(file.name)) {
        throw new TranslationError(`${where}: volume ${name}: file "${file.name}" must stay inside the volume`);
      }
    }
    dirs.push({ path: dir, mode: 0o755, uid: 0, gid, files });
    return asHostPath;
  });
}

/** The readiness probe's URL on the host (host network: 127.0.0.1 and the container's port). */
function readinessOf(where: string, container: Obj): string | undefined {
  const probe = asObj(container.readinessProbe);
  if (!isObj(probe.httpGet)) return undefined;
  const port = probe.httpGet.port;
  const number =
    typeof port === 'number'
      ? port
      : asArray(container.ports)
          .map(asObj)
          .find((p) => p.name === port)?.containerPort;
  if (typeof number !== 'number')
    throw new TranslationError(`${where}: readiness probe port "${String(port)}" is not a port of the container`);
  return `http://127.0.0.1:${number}${str(probe.httpGet.path) ?? '/'}`;
}

function planPod(
  ctx: Context,
  source: string,
  name: string,
  template: Obj,
  restartPolicy: string,
  dirs: HostDir[],
): PodPlan {
  const podName = `${ctx.options.podPrefix}${name}`;
  const spec = structuredClone(asObj(template.spec));
  if (spec.hostNetwork !== true) {
    throw new TranslationError(
      `${source}: pods run here on the host's network (hostNetwork: true), as the machine's services listen on 127.0.0.1`,
    );
  }
  let readiness: string | undefined;
  const fix = (list: unknown, kind: string): Obj[] =>
    asArray(list).map((item) => {
      const container = asObj(item);
      const where = `${source} ${kind} ${str(container.name) ?? '?'}`;
      readiness ??= readinessOf(where, container);
      const out: Obj = { ...container, env: resolveEnv(ctx, where, container) };
      delete out.envFrom;
      for (const probe of PROBES) delete out[probe];
      // On the host's network a container's ports are the host's; podman 4.3 refuses them as mappings.
      delete out.ports;
      return out;
    });
  const containers = fix(spec.containers, 'container');
  const initContainers = fix(spec.initContainers, 'init container');
  const volumes = resolveVolumes(ctx, source, podName, spec, dirs);
  const labels = asObj(asObj(template.metadata).labels);
  const podOf = (name: string, policy: string, list: Obj[]): { yaml: string; containers: string[] } => {
    const podSpec: Obj = { ...spec, restartPolicy: policy, containers: list, volumes };
    delete podSpec.initContainers;
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels }, spec: podSpec };
    return { yaml: stringify(pod), containers: list.map((c) => `${name}-${str(c.name) ?? ''}`) };
  };
  // podman 4.3 restarts an init container under restartPolicy Always and then fails to remove it: each
  // runs instead as a pod of its own, to completion, before the pod (their volumes are host directories).
  const init = initContainers.map((c) => {
    const name = `${podName}-init-${str(c.name) ?? ''}`;
    return {
      name,
      source: `${source} init container ${str(c.name) ?? ''}`,
      ...podOf(name, 'Never', [c]),
      readiness: undefined,
      init: [],
    };
  });
  return { name: podName, source, ...podOf(podName, restartPolicy, containers), readiness, init };
}

function matches(selector: Obj, labels: Obj): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

export function translate(manifests: readonly Manifest[], options: TranslateOptions): PodsPlan {
  if (!path.isAbsolute(options.volumeRoot))
    throw new TranslationError(`volumeRoot must be absolute, got "${options.volumeRoot}"`);
  const ctx: Context = {
    configMaps: dataByName(manifests, 'ConfigMap'),
    secrets: dataByName(manifests, 'Secret'),
    options,
  };
  const plan: PodsPlan = { jobs: [], workloads: [], dirs: [], services: [], ignored: [] };
  const templates: { source: string; template: Obj }[] = [];
  for (const m of manifests) {
    const source = `${m.kind}/${m.metadata.name}`;
    if (DATA_KINDS.has(m.kind)) continue;
    const why = IGNORED[m.kind];
    if (why !== undefined) {
      plan.ignored.push(`${source}: ${why}`);
      continue;
    }
    const spec = asObj(m.spec);
    if (m.kind === 'Deployment') {
      const replicas = spec.replicas ?? 1;
      if (replicas !== 1) {
        throw new TranslationError(
          `${source}: replicas ${String(replicas)}: one pod each here (a second on the host's network binds the same ports)`,
        );
      }
      const template = asObj(spec.template);
      plan.workloads.push(planPod(ctx, source, m.metadata.name, template, 'Always', plan.dirs));
      templates.push({ source, template });
    } else if (m.kind === 'Job') {
      plan.jobs.push(planPod(ctx, source, m.metadata.name, asObj(spec.template), 'Never', plan.dirs));
    } else if (m.kind !== 'Service') {
      throw new TranslationError(
        `${source}: podman kube play 4.3 cannot run a ${m.kind} (it would skip it without a word)`,
      );
    }
  }
  // Services: on the host's network, a Service's port is its pods' own.
  for (const m of manifests) {
    if (m.kind !== 'Service') continue;
    const source = `Service/${m.metadata.name}`;
    const spec = asObj(m.spec);
    const target = templates.find((t) => matches(asObj(spec.selector), asObj(asObj(t.template.metadata).labels)));
    if (target === undefined) throw new TranslationError(`${source}: its selector matches no Deployment`);
    const ports = asArray(asObj(target.template.spec).containers).flatMap((c) => asArray(asObj(c).ports).map(asObj));
    for (const item of asArray(spec.ports)) {
      const p = asObj(item);
      const targetPort = p.targetPort ?? p.port;
      const containerPort =
        typeof targetPort === 'number' ? targetPort : ports.find((x) => x.name === targetPort)?.containerPort;
      if (containerPort !== p.port) {
        throw new TranslationError(
          `${source}: port ${String(p.port)} must be its target's container port (${String(containerPort)}) on the host's network`,
        );
      }
      plan.services.push(`${source}: 127.0.0.1:${String(p.port)} (${target.source})`);
    }
  }
  return plan;
}
