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

/** What a DEPLOY would put on the runtime, to compare with what serves now. */
export interface Intended {
  jobId: string;
  runtime: string;
  namespace: string;
  kubeContext: string;
  kind: ReleaseKind;
  image: string;
  /** The keyed hash of the chart's templates it would render. */
  configHash: string;
}

/**
 * The live revision a DEPLOY (REDEPLOY, ROLLBACK) leaves alone because it would change nothing — as Helm
 * and Kubernetes leave the pods of an unchanged spec — or why it must be applied. Unchanged means: the same
 * runtime and target, the same image pinned by digest, the same configuration (templates), a revision that
 * is DEPLOYED (not stopped) and no rollout of this job or another left half-done. Jobs always run again.
 * Whether the pods are still healthy is the runtime's to say, after this.
 */
export function unchangedRelease(
  history: readonly Release[],
  next: Intended,
): { live: Release; reason?: undefined } | { live?: undefined; reason: string } {
  if (isJobKind(next.kind)) return { reason: 'a job runs on every deploy' };
  if (next.kind === 'MANAGED_DATABASE' || next.kind === 'CUSTOM_CHART') return { reason: `${next.kind} is applied` };
  if (!/@sha256:[0-9a-f]{64}$/.test(next.image)) return { reason: 'the image is not pinned by digest' };
  if (history.some((r) => r.jobId === next.jobId)) return { reason: 'this job already began a revision' };
  if (history.some((r) => r.status === 'DEPLOYING')) return { reason: 'a rollout was left half-done' };
  const live = liveRelease(history);
  if (live === undefined) return { reason: 'nothing is deployed' };
  if (live.status !== 'DEPLOYED') return { reason: `revision ${live.revision} is ${live.status}` };
  const differs = (
    [
      ['runtime', live.runtime, next.runtime],
      ['namespace', live.namespace, next.namespace],
      ['kube context', live.kubeContext, next.kubeContext],
      ['kind', live.kind, next.kind],
      ['image', live.image, next.image],
      ['configuration', live.configHash, next.configHash],
    ] as const
  ).find(([, a, b]) => a !== b);
  if (differs !== undefined) return { reason: `the ${differs[0]} changed` };
  return { live };
}
