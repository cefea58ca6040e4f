// What the deploy use cases need from the outside world. Adapters implement these; tests use the real ones
// (PostgreSQL, the file system, podman) except the Kubernetes runtime's command runner.
import type { Logger } from '@stageline/log';
import type { bus, control } from '@stageline/proto';
import type { Chart } from '../domain/chart.ts';
import type { Endpoint, HostPortBinding, Release, ReleaseKind, ReleaseStatus } from '../domain/release.ts';
import type { DatabaseCredentials, KubernetesTarget } from '../domain/workload.ts';

/** What a runtime operation may do besides its work: report progress, keep its job alive, notice a cancel. */
export interface RuntimeContext {
  /** Aborted on cancel: stop waiting, throw RolloutCanceled; the caller then rolls back. */
  readonly signal: AbortSignal;
  /** One human line for the service's run log (progress, container log lines). */
  output(line: string): void;
  /** Still working: extends the job's ack deadline. */
  working(): void;
}

export interface ApplyResult {
  endpoints: Endpoint[];
  hostPorts: HostPortBinding[];
  /** The image digest the runtime ran, when it learned it ('' otherwise). */
  digest: string;
  /** The runtime's own revision of the release (Helm's), 0 when it has none. */
  runtimeRevision: number;
  /** A lifecycle job's output.json: values for the services of later stages. */
  outputs?: Record<string, string>;
}

/**
 * A runtime target (`local` or `kubernetes`). Every method is idempotent: applying or removing twice
 * leaves the same state. Failures throw RolloutError (a human message: "container exited with code 3: …",
 * "not ready after 30s"); a cancel throws RolloutCanceled.
 */
export interface Runtime {
  readonly name: string;
  /**
   * Before anything of a DEPLOY runs: throws (FAILED_PRECONDITION) when the runtime cannot work at all
   * here (the kubernetes runtime: a helm version it does not support).
   */
  preflight?(ctx: RuntimeContext): Promise<void>;
  /** The kubernetes runtime: what a chart for this kube context renders (pull address, pull secret). */
  kubernetesTarget?(kubeContext: string): KubernetesTarget;
  /** Installs or upgrades the release's chart and waits until it is ready. */
  apply(release: Release, ctx: RuntimeContext): Promise<ApplyResult>;
  /**
   * Whether `live` still runs as deployed and passes its readiness probe once now: a DEPLOY that would
   * change nothing then leaves it alone. Runtimes without it apply every DEPLOY.
   */
  serving?(live: Release, ctx: RuntimeContext): Promise<{ ready: boolean; detail: string }>;
  /** Scales to zero; volumes and data stay. */
  stop(release: Release, ctx: RuntimeContext): Promise<void>;
  /** Restarts (starts a stopped release) and waits until it is ready. */
  restart(release: Release, ctx: RuntimeContext): Promise<ApplyResult>;
  /** Uninstalls the release and removes its data. */
  remove(release: Release, ctx: RuntimeContext): Promise<void>;
  /** After `failed` did not become ready (or was canceled): `previous` serves again, or nothing does. */
  rollbackTo(failed: Release, previous: Release | undefined, ctx: RuntimeContext): Promise<void>;
  /**
   * Before `next` is applied: a release left mid-rollout by an earlier crash (`stuck`, abandoned DEPLOYING
   * revisions; on Helm also a pending-install/-upgrade/-rollback status) is rolled back to `previous`, or
   * uninstalled if it was the first. Returns what it did, or undefined when nothing was stuck.
   */
  recover(
    next: Release,
    previous: Release | undefined,
    stuck: readonly Release[],
    ctx: RuntimeContext,
  ): Promise<string | undefined>;
}

/** A database's credentials, created once per service and kept until it is deleted. */
export interface CredentialStore {
  ensure(serviceId: string, environmentId: string, make: () => DatabaseCredentials): Promise<DatabaseCredentials>;
  get(serviceId: string): Promise<DatabaseCredentials | undefined>;
  remove(serviceId: string): Promise<void>;
}

/** Databases on a configured PostgreSQL server (MANAGED mode). */
export interface ManagedDatabases {
  /** Where workloads of a runtime reach the server; undefined when no address is configured for it. */
  endpoint(runtime: string): { host: string; port: number } | undefined;
  /** Creates the role and the database unless they exist, with this password; idempotent. */
  ensure(c: DatabaseCredentials): Promise<void>;
  /** Drops the database (its connections closed) and the role; idempotent. */
  drop(c: Pick<DatabaseCredentials, 'username' | 'database'>): Promise<void>;
}

export interface NewRelease {
  serviceId: string;
  serviceName: string;
  environmentId: string;
  deploymentId: string;
  jobId: string;
  runtime: string;
  namespace: string;
  kubeContext: string;
  image: string;
  digest: string;
  version: string;
  readinessTimeoutSeconds: number;
  kind?: ReleaseKind;
  schedule?: string;
}

export interface ReleaseChange {
  id: string;
  status: ReleaseStatus;
  message?: string;
  hostPorts?: HostPortBinding[];
  endpoints?: Endpoint[];
  digest?: string;
  runtimeRevision?: number;
}

export interface JobRecord {
  jobId: string;
  serviceId: string;
  action: control.Action;
  result: bus.JobFinished;
}

export interface ReleaseStore {
  /** The outcome recorded for a finished job, if any. */
  findResult(jobId: string): Promise<bus.JobFinished | undefined>;
  /** Every release of the service, newest first. */
  history(serviceId: string): Promise<Release[]>;
  get(serviceId: string, revision: number): Promise<Release | undefined>;
  /** The release of this job (a redelivery resumes it), or a new one with the next revision, DEPLOYING. */
  begin(input: NewRelease): Promise<Release>;
  /** Records where the chart of a DEPLOYING release is and what it hashes to. */
  setChart(id: string, chartPath: string, configHash: string): Promise<Release>;
  /** Release changes and the job's outcome, in one transaction. */
  finish(record: JobRecord, changes: readonly ReleaseChange[]): Promise<void>;
  /** Every live (DEPLOYED) CRON_JOB release on a runtime. */
  liveCronJobs(runtime: string): Promise<Release[]>;
}

export interface ChartStore {
  /** Writes the chart's directory (replacing one left by an interrupted attempt) and returns its path. */
  write(release: Pick<Release, 'environmentId' | 'serviceId' | 'revision'>, chart: Chart): Promise<string>;
  /** The files of a chart written before (a past revision), or undefined when they are gone. */
  read(chartPath: string): Promise<Chart['files'] | undefined>;
  /** Removes every chart of the service (DELETE: charts hold its secrets). */
  removeService(environmentId: string, serviceId: string): Promise<void>;
}

/** The worker framework's per-job context (packages/bus), as much of it as the handler uses. */
export interface JobContext {
  readonly jobId: string;
  readonly deploymentId: string;
  readonly serviceId: string;
  readonly attempt: number;
  readonly signal: AbortSignal;
  readonly log: Logger;
  output(message: string, step?: control.StepKind): void;
  stepStarted(kind: control.StepKind, message?: string): Promise<void>;
  stepFinished(step: control.Step): Promise<void>;
  working(): void;
  /** Throws when a newer delivery of this job is live (this copy is stale): before recording an outcome. */
  fence?(): Promise<void>;
}
