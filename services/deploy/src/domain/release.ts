// Releases: each service's revision history (schema `deploy`, owned by this service alone).

/**
 * DEPLOYING: being applied (a crashed worker leaves it; the redelivered job resumes it).
 * DEPLOYED: what runs now. SUPERSEDED: replaced by a later DEPLOYED revision.
 * FAILED: its rollout failed and the previous revision was re-applied (or it was removed).
 * ROLLED_BACK: canceled mid-rollout and rolled back. STOPPED: scaled to zero, data kept.
 * DELETED: uninstalled with its data.
 */
export const RELEASE_STATUSES = [
  'DEPLOYING',
  'DEPLOYED',
  'FAILED',
  'SUPERSEDED',
  'ROLLED_BACK',
  'STOPPED',
  'DELETED',
] as const;
export type ReleaseStatus = (typeof RELEASE_STATUSES)[number];

export interface HostPortBinding {
  containerPort: number;
  hostPort: number;
}

export interface Endpoint {
  port: number;
  url: string;
}

export interface Release {
  id: string;
  serviceId: string;
  serviceName: string;
  environmentId: string;
  revision: number;
  deploymentId: string;
  jobId: string;
  runtime: string;
  namespace: string;
  kubeContext: string;
  image: string;
  digest: string;
  version: string;
  configHash: string;
  chartPath: string;
  status: ReleaseStatus;
  message: string;
  hostPorts: HostPortBinding[];
  endpoints: Endpoint[];
  /** How long a rollout of this release may take to become ready. */
  readinessTimeoutSeconds: number;
  /** The runtime's own revision number when it has one (Helm's), for an exact rollback. */
  runtimeRevision: number;
  /** What it runs (a ReleaseKind); '' for releases recorded before kinds were: workloads. */
  kind: string;
  /** CRON_JOB: its 5-field schedule. */
  schedule: string;
  createdAt: Date;
  updatedAt: Date;
}

/** Releases that have something on the runtime: the one to roll back to, stop, restart or delete. */
export function isLive(status: ReleaseStatus): boolean {
  return status === 'DEPLOYED' || status === 'STOPPED';
}

/** The live release among a service's releases (newest first or any order): the highest live revision. */
export function liveRelease(releases: readonly Release[]): Release | undefined {
  let best: Release | undefined;
  for (const r of releases) {
    if (isLive(r.status) && (best === undefined || r.revision > best.revision)) best = r;
  }
  return best;
}

/** What a release runs: a workload kind, a database on a managed server, or a chart of the service's own. */
export type ReleaseKind =
  | 'CONTAINER'
  | 'APPLICATION'
  | 'DATABASE'
  | 'LIFECYCLE_JOB'
  | 'CRON_JOB'
  | 'MANAGED_DATABASE'
  | 'CUSTOM_CHART';

/** Releases that run to completion (a job) rather than serve: nothing of theirs keeps running. */
export function isJobKind(kind: string): boolean {
  return kind === 'LIFECYCLE_JOB' || kind === 'CRON_JOB';
}
