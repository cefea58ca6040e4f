// Names of what a release creates, derived from ids and names only, so every process derives the same ones.
import { createHash } from 'node:crypto';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function isDnsLabel(value: string): boolean {
  return DNS_LABEL.test(value);
}

/**
 * A short key for an environment: 12 hex digits of SHA-256 of its id. Not the id's first characters:
 * environment ids are UUIDv7, whose leading digits are a timestamp shared by environments created
 * in the same minute.
 */
export function environmentKey(environmentId: string): string {
  return createHash('sha256').update(environmentId).digest('hex').slice(0, 12);
}

/** The podman network of an environment on the local runtime: its services reach each other by name there. */
export function localNetworkName(environmentId: string): string {
  return `stageline-${environmentKey(environmentId)}`;
}

/**
 * The local Deployment's name: podman pod names are global to the host, so it carries the environment
 * key (`kube play` names the pod `<name>-pod-0` and its container `<name>-pod-0-<container>`).
 */
export function localWorkloadName(environmentId: string, serviceName: string): string {
  return `${serviceName}-${environmentKey(environmentId)}`;
}

export function localPodName(environmentId: string, serviceName: string): string {
  return `${localWorkloadName(environmentId, serviceName)}-pod-0`;
}

export function localContainerName(environmentId: string, serviceName: string): string {
  return `${localPodName(environmentId, serviceName)}-${serviceName}`;
}

/** A podman named volume (a PVC claim on the local runtime), unique on the host. */
export function localVolumeName(environmentId: string, claimName: string): string {
  return `${claimName}-${environmentKey(environmentId)}`;
}

// Helm refuses release names longer than 53 characters.
const HELM_RELEASE_MAX = 53;

/** The Helm release name of a service: its name, or a shortened one with a hash when Helm's limit needs it. */
export function helmReleaseName(serviceName: string): string {
  if (serviceName.length <= HELM_RELEASE_MAX) return serviceName;
  const hash = createHash('sha256').update(serviceName).digest('hex').slice(0, 8);
  const head = serviceName.slice(0, HELM_RELEASE_MAX - hash.length - 1).replace(/-+$/, '');
  return `${head}-${hash}`;
}

/** The namespace defaults to `<project>-<name>` (EnvironmentSettings.namespace), made a DNS label. */
export function defaultNamespace(project: string, environmentName: string): string {
  const raw = `${project}-${environmentName}`
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-');
  const trimmed = raw.replace(/^-+/, '').slice(0, 63).replace(/-+$/, '');
  return trimmed === '' ? 'default' : trimmed;
}
