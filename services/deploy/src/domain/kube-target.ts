// What the `kubernetes` runtime needs besides the workload (pure): the mirror's address as the cluster's
// nodes reach it, its pull secret, the environment's exposure of public ports, the endpoints read back
// from the cluster, the workloads of a custom chart's release, and the helm version's flags.
import { invalidArgument } from '@stageline/errors';
import { CLUSTER_IP, checkExposure, type Exposure, type ExposureType } from '@stageline/policy';
import { control } from '@stageline/proto';
import { parseAllDocuments } from 'yaml';
import type { Endpoint } from './release.ts';

export type { Exposure } from '@stageline/policy';

/** Where the mirror is pushed to (what deploy jobs name) and where a cluster's nodes pull from. */
export interface MirrorAddresses {
  push: string;
  pull: string;
}

/** The Secret (per namespace) the pods of a `kubernetes` environment pull the mirror's images with. */
export const MIRROR_PULL_SECRET = 'stageline-mirror-pull';

/**
 * `image` as the cluster's nodes pull it: the mirror's push address replaced by its pull address.
 * Anything not in the mirror is left as it is.
 */
export function pullImage(image: string, mirror: MirrorAddresses): string {
  const prefix = `${mirror.push}/`;
  if (mirror.pull === mirror.push || !image.startsWith(prefix)) return image;
  return `${mirror.pull}/${image.slice(prefix.length)}`;
}

/** A registry's credentials as the pods' pull secret (kubernetes.io/dockerconfigjson). */
export function pullSecretManifest(registry: string, credentials: { username: string; password: string }) {
  const auth = Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64');
  const config = { auths: { [registry]: { username: credentials.username, password: credentials.password, auth } } };
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: MIRROR_PULL_SECRET,
      labels: { 'app.kubernetes.io/managed-by': 'stageline' },
    },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': Buffer.from(JSON.stringify(config), 'utf8').toString('base64') },
  };
}

const TYPES: Record<number, ExposureType> = {
  [control.ExposureType.EXPOSURE_TYPE_UNSPECIFIED]: 'CLUSTER_IP',
  [control.ExposureType.EXPOSURE_TYPE_CLUSTER_IP]: 'CLUSTER_IP',
  [control.ExposureType.EXPOSURE_TYPE_NODE_PORT]: 'NODE_PORT',
  [control.ExposureType.EXPOSURE_TYPE_LOAD_BALANCER]: 'LOAD_BALANCER',
  [control.ExposureType.EXPOSURE_TYPE_INGRESS]: 'INGRESS',
};

/** A deploy job's exposure (absent: CLUSTER_IP), checked again: INVALID_ARGUMENT naming the field. */
export function exposureOf(e: control.Exposure | undefined): Exposure {
  if (e === undefined) return CLUSTER_IP;
  const type = TYPES[e.type];
  if (type === undefined) throw invalidArgument('exposure.type', `unknown exposure type ${e.type}`);
  const exposure: Exposure = {
    type,
    ingressDomain: e.ingressDomain,
    ingressClass: e.ingressClass,
    tlsSecret: e.tlsSecret,
  };
  const bad = checkExposure(exposure);
  if (bad !== undefined) throw invalidArgument(`exposure.${bad.field}`, bad.message);
  return exposure;
}

/** The Service of a service's public ports (NODE_PORT, LOAD_BALANCER): besides its ClusterIP one. */
export function publicServiceName(service: string): string {
  return `${service}-public`;
}

/** The Ingress host of a public port: the first at `<service>.<domain>`, the others at `<service>-<port>.<domain>`. */
export function ingressHost(service: string, port: number, first: boolean, domain: string): string {
  const label = first ? service : `${service}-${port}`;
  if (label.length > 63) {
    throw invalidArgument('service.name', `too long for an Ingress host of port ${port} (${label} over 63 characters)`);
  }
  return `${label}.${domain}`;
}

// --- reading the cluster back ---------------------------------------------------------------------

type Json = Record<string, unknown>;

function parseJson(text: string, what: string): Json {
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed !== null && typeof parsed === 'object') return parsed as Json;
  } catch {
    // below
  }
  throw new Error(`${what}: kubectl answered something that is not a JSON object`);
}

const obj = (v: unknown): Json => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number => (typeof v === 'number' && Number.isInteger(v) ? v : 0);

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The address a node is reached at (`kubectl get nodes -o json`): the first ExternalIP, else InternalIP. */
export function nodeAddress(nodesJson: string): string | undefined {
  const nodes = arr(parseJson(nodesJson, 'nodes').items);
  for (const wanted of ['ExternalIP', 'InternalIP']) {
    for (const node of nodes) {
      for (const a of arr(obj(obj(node).status).addresses)) {
        if (str(obj(a).type) === wanted && str(obj(a).address) !== '') return str(obj(a).address);
      }
    }
  }
  return undefined;
}

/**
 * A Service's endpoints (`kubectl get service -o json`), one per port: a NodePort's on `node` (undefined:
 * none known, no endpoint), a LoadBalancer's on its assigned address (none yet: none), by the service
 * port's container port (its targetPort name `tcp-<port>`, else the port).
 */
export function endpointsFromService(serviceJson: string, node: string | undefined): Endpoint[] {
  const service = parseJson(serviceJson, 'service');
  const spec = obj(service.spec);
  const type = str(spec.type);
  const ports = arr(spec.ports).map((p) => obj(p));
  const containerPort = (p: Json): number => {
    const target = str(p.targetPort);
    const m = /^tcp-(\d+)$/.exec(target);
    return m !== null ? Number(m[1]) : num(p.targetPort) || num(p.port);
  };
  if (type === 'NodePort') {
    if (node === undefined) return [];
    return ports
      .filter((p) => num(p.nodePort) > 0)
      .map((p) => ({ port: containerPort(p), url: `http://${hostPort(node, num(p.nodePort))}` }));
  }
  if (type === 'LoadBalancer') {
    const ingress = obj(arr(obj(obj(service.status).loadBalancer).ingress)[0]);
    const address = str(ingress.ip) || str(ingress.hostname);
    if (address === '') return [];
    return ports.map((p) => ({ port: containerPort(p), url: `http://${hostPort(address, num(p.port))}` }));
  }
  return [];
}

/**
 * An Ingress's endpoints (`kubectl get ingress -o json`): `https://<host>/` for a host its TLS covers,
 * `http://<host>/` otherwise, by the backend's port (its name `tcp-<port>` or number).
 */
export function endpointsFromIngress(ingressJson: string): Endpoint[] {
  const spec = obj(parseJson(ingressJson, 'ingress').spec);
  const tlsHosts = new Set(arr(spec.tls).flatMap((t) => arr(obj(t).hosts).map(str)));
  const endpoints: Endpoint[] = [];
  for (const rule of arr(spec.rules).map(obj)) {
    const host = str(rule.host);
    const backend = obj(obj(obj(arr(obj(rule.http).paths)[0]).backend).service);
    const port = obj(backend.port);
    const m = /^tcp-(\d+)$/.exec(str(port.name));
    const number = m !== null ? Number(m[1]) : num(port.number);
    if (host === '' || number === 0) continue;
    endpoints.push({ port: number, url: `${tlsHosts.has(host) ? 'https' : 'http'}://${host}/` });
  }
  return endpoints;
}

/** A workload of a custom chart's release. */
export interface ReleaseWorkload {
  kind: 'Deployment' | 'StatefulSet';
  name: string;
  /** As the chart declares it (absent: 1): what a RESTART of a stopped release scales back to. */
  replicas: number;
}

/** The Deployments and StatefulSets of a release's manifest (`helm get manifest`), in order. */
export function releaseWorkloads(manifest: string): ReleaseWorkload[] {
  const found: ReleaseWorkload[] = [];
  for (const doc of parseAllDocuments(manifest)) {
    const m = obj(doc.toJS());
    const kind = str(m.kind);
    const name = str(obj(m.metadata).name);
    if ((kind !== 'Deployment' && kind !== 'StatefulSet') || name === '') continue;
    const replicas = obj(m.spec).replicas;
    found.push({ kind, name, replicas: typeof replicas === 'number' ? replicas : 1 });
  }
  return found;
}

/** The Deployments and StatefulSets a `kubectl get deployment,statefulset -o json` listed. */
export function listedWorkloads(listJson: string): Array<{ kind: 'Deployment' | 'StatefulSet'; name: string }> {
  return arr(parseJson(listJson, 'workloads').items)
    .map(obj)
    .flatMap((item) => {
      const kind = str(item.kind);
      const name = str(obj(item.metadata).name);
      return (kind === 'Deployment' || kind === 'StatefulSet') && name !== '' ? [{ kind, name }] : [];
    });
}

// --- helm versions --------------------------------------------------------------------------------

export interface HelmVersion {
  major: number;
  minor: number;
  text: string;
}

/** Helm 3 from 3.8 (OCI charts without an experimental flag) and helm 4. */
export const SUPPORTED_HELM = 'helm 3.8 or later 3.x, or helm 4.x';

/** `helm version --template {{.Version}}` → its version; undefined when the answer is not a version. */
export function parseHelmVersion(text: string): HelmVersion | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)\S*$/.exec(text.trim());
  if (m === null) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), text: text.trim() };
}

/** Why this helm cannot be used, or undefined when it can. */
export function unsupportedHelm(v: HelmVersion): string | undefined {
  if (v.major === 4 || (v.major === 3 && v.minor >= 8)) return undefined;
  return `helm ${v.text} is not supported (${SUPPORTED_HELM})`;
}

/** The flags that differ between helm 3 and helm 4. */
export interface HelmFlags {
  /** `upgrade --install`: a rollout not ready in time is rolled back by helm itself. */
  rollbackOnFailure: string[];
  /** Wait for readiness (upgrade, rollback, uninstall). */
  wait: string[];
}

export function helmFlags(v: HelmVersion): HelmFlags {
  // helm 4 renamed --atomic, and --wait takes a strategy (watcher: kstatus, the new default).
  return v.major >= 4
    ? { rollbackOnFailure: ['--rollback-on-failure'], wait: ['--wait=watcher'] }
    : { rollbackOnFailure: ['--atomic'], wait: ['--wait'] };
}
