// Requests that take runs further (issue 15): per-service versions, resuming a FAILED or CANCELED
// run, rolling back to the environment as a past run deployed it. The decisions are the pure core's
// (domain/resume.ts, domain/rollback.ts); this reads the facts they need and shapes what they say.
import { failedPrecondition, invalidArgument, notFound } from '@stageline/errors';
import { type bus, control } from '@stageline/proto';
import type { ActionName, RunOptions, RunState } from '../domain/model.ts';
import {
  type EnvironmentShape,
  notResumable,
  resumeRefusals,
  resumeRun,
  type ServiceDefinition,
} from '../domain/resume.ts';
import { rollbackDefinitions, rollbackSummary } from '../domain/rollback.ts';
import type { Snapshot } from './context.ts';
import type { RunReads, RunRecord } from './run-store.ts';
import { actionValue } from './wire.ts';

interface SnapshotJson {
  environment?: { runtime?: string; settings?: { namespace?: string } };
  services?: ServiceDefinition[];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** DEPLOY's per-service versions: services of the environment, each a valid version. */
export function checkVersions(
  versions: Readonly<Record<string, string>>,
  action: string,
  snap: Snapshot,
  parseVersion: (version: string, field: string) => void,
): void {
  const ids = Object.keys(versions);
  if (ids.length === 0) return;
  if (action !== 'DEPLOY') throw invalidArgument('versions', 'applies to DEPLOY only');
  for (const id of ids) {
    if (!snap.services.some((s) => s.id === id)) throw notFound('service', id, `versions[${id}]`);
    parseVersion(versions[id] ?? '', `versions[${id}]`);
  }
}

/** The options a request asks for, as stored with its run. */
export function optionsOf(request: bus.ActionRequested, action: string): RunOptions {
  const options: RunOptions = {};
  if (Object.keys(request.versions).length > 0) options.versions = { ...request.versions };
  if (action === 'ROLLBACK' && request.runLifecycleJobs) options.runLifecycleJobs = true;
  return options;
}

/** The environment as a run's snapshot kept it, or as it is now, in the shape a resume compares. */
function shapeOf(
  environment: SnapshotJson['environment'],
  stages: readonly string[],
  services: ServiceDefinition[],
): EnvironmentShape {
  return {
    runtime: environment?.runtime ?? '',
    namespace: environment?.settings?.namespace ?? '',
    stages,
    services,
  };
}

/**
 * A resume request made into the request it repeats: the previous run's action, scope, version(s)
 * and force_build, with `resumeOf` set. Refused when the run is not FAILED or CANCELED, is already
 * resumed, or the environment changed unsafely since (each change named).
 */
export async function resumeRequest(
  reads: RunReads,
  request: bus.ActionRequested,
  snap: Snapshot,
): Promise<{ request: bus.ActionRequested; options: RunOptions }> {
  const id = request.resumeDeploymentId;
  if (!UUID.test(id)) throw notFound('deployment', id, 'deployment_id');
  const previous = await reads.run(id);
  if (!previous || previous.environmentId !== request.environmentId) throw notFound('deployment', id, 'deployment_id');
  const why = notResumable(previous.status);
  if (why !== undefined) throw failedPrecondition(why, 'deployment_id');
  const already = await reads.resumedBy(previous.environmentId, id);
  if (already !== undefined) {
    throw failedPrecondition(`run ${id} was already resumed by run ${already} (resume that one)`, 'deployment_id');
  }
  const unsafe = unsafeToResume(previous, snap);
  if (unsafe !== undefined) throw failedPrecondition(unsafe, 'deployment_id');
  const options: RunOptions = { ...previous.options, resumeOf: id };
  return {
    request: {
      ...request,
      action: actionValue(previous.action as ActionName),
      serviceIds: previous.serviceIds,
      version: previous.version,
      forceBuild: previous.forceBuild,
      toDeploymentId: previous.toDeploymentId ?? '',
      versions: previous.options.versions ?? {},
      runLifecycleJobs: previous.options.runLifecycleJobs ?? false,
    },
    options,
  };
}

/**
 * Why resuming `previous` against the environment as `snap` shows it is unsafe (every change named),
 * or undefined. Asked when the resume is requested and again when it starts (it may have waited).
 */
export function unsafeToResume(
  previous: Pick<RunRecord, 'id' | 'state' | 'snapshot'>,
  snap: Snapshot,
): string | undefined {
  if (!previous.state) return undefined;
  const then = (previous.snapshot ?? {}) as SnapshotJson;
  const stagesThen = [...previous.state.stages].sort((a, b) => a.order - b.order).map((s) => s.stageId);
  const reasons = resumeRefusals(
    previous.state,
    previous.id,
    shapeOf(then.environment, stagesThen, then.services ?? []),
    shapeOf(
      control.Environment.toJSON(snap.environment) as SnapshotJson['environment'],
      (snap.pipeline?.stages ?? []).map((s) => s.id),
      snap.services.map((s) => control.Service.toJSON(s) as ServiceDefinition),
    ),
  );
  return reasons.length === 0 ? undefined : `cannot resume run ${previous.id}: since it ran, ${reasons.join('; ')}`;
}

/** The run a resume takes up, when `options` make it one. */
export async function resumedRun(reads: RunReads, options: RunOptions | undefined): Promise<RunRecord | undefined> {
  return options?.resumeOf ? reads.run(options.resumeOf) : undefined;
}

/** A planned resume: what succeeded in the run it takes up is skipped, the rest runs. */
export async function resumed(reads: RunReads, options: RunOptions | undefined, planned: RunState): Promise<RunState> {
  if (!options?.resumeOf) return planned;
  const previous = await reads.runState(options.resumeOf);
  return previous ? resumeRun(planned, previous, options.resumeOf) : planned;
}

/**
 * The service definitions a run deploys, as proto JSON: the environment's now, except that a
 * ROLLBACK deploys each service it restores as the target run deployed it (configuration and
 * secrets, sealed as then).
 */
export function definitionsOfRun(snap: Snapshot, state: RunState, target: unknown): unknown[] {
  const now = snap.services.map((s) => control.Service.toJSON(s) as ServiceDefinition);
  if (state.action !== 'ROLLBACK') return now;
  const restored = new Set(state.services.filter((s) => s.status !== 'SKIPPED').map((s) => s.serviceId));
  return rollbackDefinitions(now, (target as SnapshotJson | null)?.services ?? [], restored);
}

/** A planned ROLLBACK says, per service it restores, what changes: version and configuration. */
export async function explainRollback(
  reads: RunReads,
  state: RunState,
  snap: Snapshot,
  toDeploymentId: string | null,
): Promise<void> {
  if (state.action !== 'ROLLBACK' || !toDeploymentId) return;
  const target = await reads.run(toDeploymentId);
  const then = new Map((((target?.snapshot ?? {}) as SnapshotJson).services ?? []).map((s) => [s.id, s]));
  const statuses = new Map((await reads.serviceStatuses(snap.environment.id)).map((s) => [s.serviceId, s]));
  for (const s of state.services) {
    if (s.status === 'SKIPPED') continue;
    const now = snap.services.find((x) => x.id === s.serviceId);
    s.message = rollbackSummary(
      { version: statuses.get(s.serviceId)?.version ?? '' },
      { version: s.version },
      now === undefined ? undefined : (control.Service.toJSON(now) as ServiceDefinition),
      then.get(s.serviceId),
    );
  }
}
