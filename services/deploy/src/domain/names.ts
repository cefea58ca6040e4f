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

// The namespace rule and Helm release names live in @stageline/policy, shared with control.
