// The planner's pure model: a run is a value; the core maps (run, fact) → (run, decisions).
// Names mirror the proto enums without their prefixes; adapters map them to the wire.

export type ActionName = 'DEPLOY' | 'REDEPLOY' | 'STOP' | 'RESTART' | 'DELETE' | 'ROLLBACK';
export type KindName = 'DATABASE' | 'LIFECYCLE_JOB' | 'CRON_JOB' | 'CONTAINER' | 'APPLICATION';
export type Mode = 'PIPELINED' | 'STRICT';

export type ServiceStateName =
  | 'QUEUED'
  | 'BUILDING'
  | 'BUILD_ERROR'
  | 'MIRRORING'
  | 'DEPLOYING'
  | 'DEPLOYED'
  | 'DEPLOYMENT_ERROR'
  | 'STOP_QUEUED'
  | 'STOPPING'
  | 'STOPPED'
  | 'STOP_ERROR'
  | 'RESTARTING'
  | 'RESTARTED'
  | 'RESTART_ERROR'
  | 'DELETE_QUEUED'
  | 'DELETING'
  | 'DELETED'
  | 'DELETE_ERROR'
  | 'EXECUTING'
  | 'CANCELING'
  | 'CANCELED'
  | 'SKIPPED';

export type StageStatusName = 'QUEUED' | 'ONGOING' | 'DONE' | 'ERROR' | 'SKIPPED' | 'CANCELED';
export type RunStatusName = 'PLANNED' | 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELING' | 'CANCELED';
export type StepKindName =
  | 'GIT_CLONE'
  | 'BUILD_QUEUEING'
  | 'BUILD'
  | 'MIRROR_IMAGE'
  | 'DEPLOYMENT_QUEUEING'
  | 'DEPLOYMENT'
  | 'STOP'
  | 'RESTART'
  | 'DELETE'
  | 'EXECUTING';
export type StepOutcomeName = 'SUCCESS' | 'ERROR' | 'CACHE_HIT' | 'SKIPPED' | 'CANCELED';

/** What the planner knows of a service when a run starts (from control's snapshot and its own history). */
export interface ServiceFacts {
  id: string;
  name: string;
  kind: KindName;
  stageId: string;
  skipped: boolean;
  /** How its image is obtained: built from git, mirrored from a registry, or not at all (managed database). */
  build: 'GIT' | 'MIRROR' | null;
  /** The version DEPLOY resolves to: the configured commit/branch or tag. */
  configuredVersion: string;
  /** From the planner's own history. */
  current: CurrentState;
  /** LIFECYCLE_JOB: the environment events it runs on (absent: DEPLOY only). */
  runsOn?: { deploy: boolean; stop: boolean; delete: boolean };
  /** How long its build and deploy took in an earlier run (absent: unknown). */
  expectedMs?: ExpectedMs;
}

/** Durations from earlier runs: a stage's longest jobs are dispatched first. */
export interface ExpectedMs {
  build?: number;
  deploy?: number;
}

export interface CurrentState {
  /** Resources exist (deployed or stopped). */
  hasResources: boolean;
  stopped: boolean;
  /** The version and mirror image it runs now (empty when never deployed). */
  version: string;
  image: string;
}

export interface EnvironmentFacts {
  environmentId: string;
  /** Stages in pipeline order. */
  stages: { id: string; name: string }[];
  /** Services in pipeline order. */
  services: ServiceFacts[];
  maxParallelBuilds: number;
  maxParallelDeploys: number;
  mode: Mode;
}

export interface RunRequest {
  action: ActionName;
  /** Empty: the whole environment; otherwise a service-level action on these services. */
  serviceIds: string[];
  version: string;
  forceBuild: boolean;
  /** ROLLBACK: per service, the version and image it had after the target run. */
  rollbackTo?: Record<string, { version: string; image: string }>;
  /** DEPLOY: per service id, the version it deploys (the others: their configured one). */
  versions?: Record<string, string>;
  /** ROLLBACK: run lifecycle jobs configured for DEPLOY again (default: they are skipped). */
  runLifecycleJobs?: boolean;
}

/** What a run was asked beyond its action, scope and version. */
export interface RunOptions {
  /** DEPLOY: per service id, the version it deploys. */
  versions?: Record<string, string>;
  /** A resume: the FAILED or CANCELED run it takes up. */
  resumeOf?: string;
  /** ROLLBACK: run lifecycle jobs configured for DEPLOY again. */
  runLifecycleJobs?: boolean;
}

export type JobRole = 'build' | 'deploy';
export type JobPhase = 'PENDING' | 'DISPATCHED' | 'DONE' | 'FAILED' | 'CANCELED';

export interface JobSlot {
  role: JobRole;
  /** build: GIT or MIRROR; deploy: the worker action. */
  what: 'GIT' | 'MIRROR' | 'DEPLOY' | 'STOP' | 'RESTART' | 'DELETE';
  phase: JobPhase;
  jobId: string;
  attempt: number;
  /** Highest JobEvent sequence applied, to drop repeats and stale events. */
  lastSequence: number;
  /** LIFECYCLE_JOB: the event a DEPLOY job runs it for (STOP, DELETE); absent: the run's own action. */
  trigger?: 'STOP' | 'DELETE';
}

export interface Step {
  kind: StepKindName;
  startedAt: number;
  finishedAt: number | null;
  outcome: StepOutcomeName | null;
  message: string;
}

export interface ServiceRun {
  serviceId: string;
  name: string;
  kind: KindName;
  stageId: string;
  status: ServiceStateName;
  version: string;
  image: string;
  build: JobSlot | null;
  deploy: JobSlot | null;
  steps: Step[];
  /** Its work in this run is over (successfully, skipped, failed or canceled). */
  finished: boolean;
  /** Its work failed: the run fails. */
  failed: boolean;
  message: string;
  endpoints: { port: number; url: string }[];
  /** Values this service's deploy produced for later stages (job outputs, database connection details). */
  outputs: Record<string, string>;
  /** From earlier runs; absent in runs planned before it existed. */
  expectedMs?: ExpectedMs;
  /** A resume reused it: the run it succeeded in (it is SKIPPED in this one). */
  succeededIn?: string;
}

export interface StageRun {
  stageId: string;
  name: string;
  /** Pipeline order (not execution order). */
  order: number;
  status: StageStatusName;
}

export interface RunState {
  id: string;
  action: ActionName;
  status: RunStatusName;
  /** Stage ids in the order this action walks them (reversed for STOP and DELETE). */
  executionOrder: string[];
  stages: StageRun[];
  services: ServiceRun[];
  maxBuilds: number;
  maxDeploys: number;
  mode: Mode;
  forceBuild: boolean;
  cancelRequested: boolean;
  message: string;
  startedAt: number | null;
  finishedAt: number | null;
}

/** What the shell must do after the core decided. */
export type Decision =
  | { type: 'dispatch'; role: JobRole; serviceId: string; jobId: string; attempt: number; what: JobSlot['what'] }
  | { type: 'cancelJobs' }
  | { type: 'finished'; status: RunStatusName };

export const TERMINAL_RUN: readonly RunStatusName[] = ['SUCCEEDED', 'FAILED', 'CANCELED'];
export const isTerminalRun = (status: RunStatusName): boolean => TERMINAL_RUN.includes(status);
