// What every handler of the planner shares: its dependencies, the run store, the clock, the run log.
import type { Subjects } from '@stageline/bus';
import type { Database } from '@stageline/db';
import { DomainError, failedPrecondition, invalidArgument, notFound } from '@stageline/errors';
import type { Logger } from '@stageline/log';
import { type build, type bus, control, type snapshot } from '@stageline/proto';
import { customChartOnLocal, validVersion } from '../domain/requests.ts';
import type { RunLog } from './run-log.ts';
import type { RunStore } from './run-store.ts';

export interface PlannerAppDeps {
  db: Database;
  subjects: Subjects;
  /** Control's SnapshotService: the environment as a run needs it, secrets included. */
  snapshot(environmentId: string): Promise<snapshot.GetEnvironmentSnapshotResponse>;
  /** Tells every worker to stop the jobs of a run (core NATS). */
  publishCancel(deploymentId: string): void;
  /** Wakes the outbox relay after a commit. */
  onCommit(): void;
  /**
   * The build service's dry run of build and mirror jobs (BuildService/PredictBuilds): a plan marks
   * predicted cache hits with it. Optional: without it (or when it fails) a plan says so and goes on.
   */
  predictBuilds?(jobs: bus.BuildJob[]): Promise<build.BuildPrediction[]>;
  log: Logger;
  now?: () => number;
  /** This planner process (`<host name>:<pid>`), written into each run event it makes. */
  instance?: string;
}

export interface Ctx {
  readonly deps: PlannerAppDeps;
  readonly store: RunStore;
  readonly now: () => number;
  /** Run starts, stage changes and ends: logged and counted once committed. */
  readonly runLog: RunLog;
  /** Run id → its environment, for runs in progress. */
  readonly environments: Map<string, string>;
}

/** After a commit: the outbox relay publishes, the run log tells. */
export function committed(ctx: Ctx): void {
  ctx.deps.onCommit();
  ctx.runLog.tell();
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const OPEN = ['QUEUED', 'RUNNING', 'CANCELING'];
export const ACTIVE = ['RUNNING', 'CANCELING'];

/** The environment as a run needs it. */
export interface Snapshot {
  environment: control.Environment;
  pipeline?: control.Pipeline | undefined;
  services: control.Service[];
}

/** Control's snapshot of the environment; NOT_FOUND when it has none. */
export async function fetchSnapshot(ctx: Ctx, environmentId: string): Promise<Snapshot> {
  const snap = await ctx.deps.snapshot(environmentId);
  if (!snap.environment) throw notFound('environment', environmentId, 'environment_id');
  return { ...snap, environment: snap.environment };
}

/** The same, undefined when the environment no longer exists. */
export async function snapshotIfAny(ctx: Ctx, environmentId: string): Promise<Snapshot | undefined> {
  try {
    return await fetchSnapshot(ctx, environmentId);
  } catch (e) {
    if (e instanceof DomainError && e.code === 'NOT_FOUND') return undefined;
    throw e;
  }
}

/** The snapshot kept with a queued run: the environment as its latest request saw it (proto JSON). */
export function queuedSnapshotJson(snap: Snapshot): unknown {
  return {
    environment: control.Environment.toJSON(snap.environment),
    ...(snap.pipeline !== undefined ? { pipeline: control.Pipeline.toJSON(snap.pipeline) } : {}),
    services: snap.services.map((s) => control.Service.toJSON(s)),
  };
}

/** A queued run's kept snapshot, as the request saw it. */
export function queuedSnapshotOf(json: unknown): Snapshot {
  const j = json as { environment?: unknown; pipeline?: unknown; services?: unknown[] };
  return {
    environment: control.Environment.fromJSON(j.environment ?? {}),
    ...(j.pipeline !== undefined ? { pipeline: control.Pipeline.fromJSON(j.pipeline) } : {}),
    services: (j.services ?? []).map((s) => control.Service.fromJSON(s)),
  };
}

/** Throws INVALID_ARGUMENT naming `field` unless `version` is a form a request may pin. */
export function parseVersion(version: string, field = 'version'): void {
  if (!validVersion(version)) {
    throw invalidArgument(field, 'must be commit:<sha>, tag:<tag>, revision:<n> or a bare commit or tag');
  }
}

/** Refuses a request that would deploy a service with its own chart on `local` (domain/requests.ts). */
export function checkCustomCharts(snap: Snapshot, action: string, serviceIds: readonly string[]): void {
  const name = chartedOnLocal(snap, action, serviceIds);
  if (name !== undefined) throw refuseCustomChart(name, snap.environment.runtime);
}

export function chartedOnLocal(snap: Snapshot, action: string, serviceIds: readonly string[]): string | undefined {
  return customChartOnLocal(
    snap.environment.runtime,
    snap.services.map((s) => ({
      id: s.id,
      name: s.name,
      skipped: s.skipped,
      customChart: s.chart?.source !== undefined,
    })),
    action,
    serviceIds,
  );
}

export function refuseCustomChart(name: string, runtime: string): DomainError {
  return failedPrecondition(
    `service "${name}" names its own Helm chart, which only the kubernetes runtime can deploy; ` +
      `this environment runs on "${runtime || 'local'}"`,
    'service.chart',
  );
}
