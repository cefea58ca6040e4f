// Advancing a run: one scheduling step of the pure core (domain/schedule.ts advance), the jobs it
// dispatches as BuildJob/DeployJob outbox rows, and — when the run ends — each service's standing.
import { newId } from '@stageline/db';
import { bus, control } from '@stageline/proto';
import type { Decision, RunState } from '../domain/model.ts';
import { isTerminalRun } from '../domain/model.ts';
import { type ServiceStanding, standingAfterRun } from '../domain/outcomes.ts';
import { advance, injectedEnv } from '../domain/schedule.ts';
import { runTransitions } from '../domain/transitions.ts';
import type { Ctx } from './context.ts';
import type { LaneTx, RunRecord, ServiceStatus } from './run-store.ts';
import { actionValue } from './wire.ts';

/**
 * Advances a run to `input`, takes its new state (written by the caller's run event), enqueues the
 * jobs it dispatches and — when it finishes — records each service's new standing. Returns whether
 * the run finished.
 */
export async function applyState(ctx: Ctx, tx: LaneTx, row: RunRecord, input: RunState): Promise<boolean> {
  const { state, decisions } = advance(input, ctx.now());
  ctx.runLog.note(
    {
      id: row.id,
      environmentId: row.environmentId,
      action: state.action,
      serviceIds: state.services.map((s) => s.serviceId),
    },
    runTransitions(row.state ?? undefined, state),
  );
  row.state = state;
  row.status = state.status;
  if (row.startedAt == null && state.startedAt !== null) row.startedAt = new Date(state.startedAt);
  const dispatches = decisions.filter((d) => d.type === 'dispatch');
  const persisted = dispatches.some((d) => d.role === 'deploy')
    ? new Map((await tx.serviceStatuses(row.environmentId)).map((s) => [s.serviceId, s.outputs]))
    : new Map<string, Record<string, string>>();
  for (const d of dispatches) dispatch(ctx, tx, row, state, d, persisted);
  if (!isTerminalRun(state.status)) return false;
  row.finishedAt = new Date(state.finishedAt ?? ctx.now());
  await recordOutcome(ctx, tx, row, state);
  return true;
}

function dispatch(
  ctx: Ctx,
  tx: LaneTx,
  row: RunRecord,
  state: RunState,
  d: Extract<Decision, { type: 'dispatch' }>,
  persisted: ReadonlyMap<string, Record<string, string>>,
): void {
  const snap = row.snapshot as { environment: unknown; services: unknown[] };
  const environment = control.Environment.fromJSON(snap.environment);
  const serviceJson = snap.services.find((s) => (s as { id?: string }).id === d.serviceId);
  const service = control.Service.fromJSON(serviceJson);
  const run = state.services.find((s) => s.serviceId === d.serviceId)!;
  const common = {
    jobId: d.jobId,
    deploymentId: row.id,
    environmentId: row.environmentId,
    project: environment.project,
    environmentName: environment.name,
    service,
    version: run.version,
    attempt: d.attempt,
  };
  if (d.role === 'build') {
    const job = buildJobOf({
      ...common,
      environment,
      what: d.what === 'GIT' ? 'GIT' : 'MIRROR',
      forceBuild: state.forceBuild,
    });
    tx.enqueue({
      id: newId(),
      subject: ctx.deps.subjects.buildJobs(row.id),
      payload: bus.BuildJob.encode(job).finish(),
    });
    return;
  }
  const action =
    d.what === 'DEPLOY' ? 'DEPLOY' : d.what === 'STOP' ? 'STOP' : d.what === 'RESTART' ? 'RESTART' : 'DELETE';
  const job = bus.DeployJob.fromPartial({
    ...common,
    action: actionValue(action),
    image: run.image,
    runtime: environment.runtime,
    namespace: environment.settings?.namespace ?? '',
    kubernetesContext: environment.settings?.kubernetesContext ?? '',
    // How a kubernetes environment exposes public ports (deploy renders Services or an Ingress).
    ...(environment.settings?.exposure !== undefined ? { exposure: environment.settings.exposure } : {}),
    injectedEnv:
      run.deploy?.trigger !== undefined
        ? // A job run for STOP or DELETE walks the stages in reverse, before the earlier ones go: it
          // gets what the other services produced when they last deployed (a database's URL, say).
          Object.assign({}, ...[...persisted].filter(([id]) => id !== d.serviceId).map(([, o]) => o))
        : injectedEnv(state, d.serviceId, persisted),
    ...(run.deploy?.trigger !== undefined ? { trigger: actionValue(run.deploy.trigger) } : {}),
    deployHost: deployHostOf(environment),
  });
  tx.enqueue({
    id: newId(),
    // A `local` environment bound to a host: only that host's workers take its jobs.
    subject:
      job.deployHost === ''
        ? ctx.deps.subjects.deployJobs(row.id)
        : ctx.deps.subjects.hostDeployJobs(row.id, job.deployHost),
    payload: bus.DeployJob.encode(job).finish(),
  });
}

const FRESH: ServiceStanding = {
  hasResources: false,
  stopped: false,
  version: '',
  image: '',
  state: 'QUEUED',
  outputs: {},
};

/** Each service's standing after the run (domain/outcomes.ts), written in one statement; a DELETE of the environment deletes it. */
async function recordOutcome(ctx: Ctx, tx: LaneTx, row: RunRecord, state: RunState): Promise<void> {
  const known = new Map((await tx.serviceStatuses(row.environmentId)).map((s) => [s.serviceId, s]));
  const changed: ServiceStatus[] = [];
  for (const s of state.services) {
    const current = known.get(s.serviceId);
    const before: ServiceStanding = current ?? FRESH;
    const next = standingAfterRun(before, s);
    // A service first seen gets its status even when the run left it as it was.
    if (next === before && current !== undefined) continue;
    changed.push({ ...next, serviceId: s.serviceId, environmentId: current?.environmentId ?? row.environmentId });
  }
  await tx.saveServiceStatuses(changed, new Date(ctx.now()));
  if (row.action === 'DELETE' && row.serviceIds.length === 0 && state.status === 'SUCCEEDED') {
    await tx.markDeleted(row.environmentId);
  }
}

/** A build or mirror job as the planner dispatches it (and as a plan asks the build service about it). */
export function buildJobOf(j: {
  jobId: string;
  deploymentId: string;
  environmentId: string;
  environment: control.Environment;
  service: control.Service;
  version: string;
  attempt: number;
  what: 'GIT' | 'MIRROR';
  forceBuild: boolean;
}): bus.BuildJob {
  return bus.BuildJob.fromPartial({
    jobId: j.jobId,
    deploymentId: j.deploymentId,
    environmentId: j.environmentId,
    project: j.environment.project,
    environmentName: j.environment.name,
    service: j.service,
    version: j.version,
    attempt: j.attempt,
    kind: j.what === 'GIT' ? bus.BuildKind.BUILD_KIND_GIT : bus.BuildKind.BUILD_KIND_MIRROR,
    forceBuild: j.forceBuild,
    mirrorMode: j.environment.settings?.mirrorMode ?? control.MirrorMode.MIRROR_MODE_SERVICE,
  });
}

/** The deploy host a `local` environment is bound to (settings.deploy_host); '' for any host. */
function deployHostOf(environment: {
  runtime: string;
  settings?: { deployHost?: string | undefined } | undefined;
}): string {
  return environment.runtime === 'kubernetes' ? '' : (environment.settings?.deployHost ?? '');
}
