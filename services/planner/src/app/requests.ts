// Requests: one request becomes exactly one run (or joins a queued one), checked against the
// environment as control's snapshot has it — a snapshot kept with the queued run, which deploys the
// environment as its latest request saw it. While nothing runs, the run starts in the transaction that
// admits it. Resume and cancel.
import { newId } from '@stageline/db';
import { failedPrecondition, invalidArgument, notFound } from '@stageline/errors';
import { type bus, control } from '@stageline/proto';
import type { RunOptions } from '../domain/model.ts';
import { isTerminalRun } from '../domain/model.ts';
import { admit } from '../domain/queue.ts';
import { requestCancel } from '../domain/schedule.ts';
import {
  type Ctx,
  checkCustomCharts,
  committed,
  fetchSnapshot,
  parseVersion,
  queuedSnapshotJson,
  type Snapshot,
  UUID,
} from './context.ts';
import { applyState } from './dispatch.ts';
import { kick, openRunOf, startNext } from './queue-runs.ts';
import { getDeployment } from './reads.ts';
import { queueMoved, runEvent } from './run-events.ts';
import type { RunRecord } from './run-store.ts';
import { checkVersions, optionsOf, resumeRequest } from './runs-further.ts';
import { actionName } from './wire.ts';

/** The request's fields, checked before anything is read: each bad one named. */
function checkRequest(request: bus.ActionRequested) {
  const action = actionName(request.action);
  if (!action) throw invalidArgument('action', 'is required: DEPLOY, REDEPLOY, STOP, RESTART, DELETE or ROLLBACK');
  checkRequestId(request);
  const serviceIds = [...new Set(request.serviceIds)];
  if (serviceIds.some((id) => !UUID.test(id))) throw invalidArgument('service_ids', 'must be service ids');
  parseVersion(request.version);
  if (request.version !== '' && serviceIds.length !== 1)
    throw invalidArgument('version', 'needs exactly one target service (several: versions, per service)');
  if (action === 'ROLLBACK') {
    if (serviceIds.length > 0) throw invalidArgument('service_ids', 'ROLLBACK applies to the whole environment');
    if (!UUID.test(request.toDeploymentId)) throw invalidArgument('to_deployment_id', 'must be the id of a past run');
  }
  return { action, serviceIds };
}

function checkRequestId(request: bus.ActionRequested): void {
  if (request.requestId === '' || request.requestId.length > 256)
    throw invalidArgument('request_id', 'is required (at most 256 characters)');
  if (!UUID.test(request.environmentId)) throw invalidArgument('environment_id', 'must be an environment id');
}

/** One request becomes exactly one run (or joins a queued one); the same request_id twice is one run. */
export async function submit(
  ctx: Ctx,
  request: bus.ActionRequested,
  resuming?: RunOptions,
  /** The environment, when the caller already fetched it (a resume). */
  fetched?: Snapshot,
): Promise<control.Deployment> {
  if (request.cancelDeploymentId !== '') return cancel(ctx, request.cancelDeploymentId);
  if (request.resumeDeploymentId !== '') return resume(ctx, request);
  const { action, serviceIds } = checkRequest(request);

  const known = await byRequestId(ctx, request.requestId);
  if (known) return known;

  const snap = fetched ?? (await fetchSnapshot(ctx, request.environmentId));
  if (snap.environment.status === control.EnvironmentStatus.ENVIRONMENT_STATUS_DELETED) {
    throw failedPrecondition('the environment is deleted');
  }
  for (const id of serviceIds) {
    if (!snap.services.some((s) => s.id === id)) throw notFound('service', id, 'service_ids');
  }
  checkVersions(request.versions, action, snap, parseVersion);
  checkCustomCharts(snap, action, serviceIds);
  const options = { ...optionsOf(request, action), ...resuming };

  const result = await ctx.store.inLane(request.environmentId, async (tx, deleted) => {
    const again = await tx.runOfRequest(request.requestId);
    if (again) return { id: again, merged: false };
    if (deleted) throw failedPrecondition('the environment is deleted');
    const open = await tx.openRuns(request.environmentId);
    const admission = admit(open.map(openRunOf), {
      ...request,
      action,
      serviceIds,
      ...(options.versions ? { versions: options.versions } : {}),
      ...(options.resumeOf ? { resumeOf: options.resumeOf } : {}),
    });
    if (admission.type === 'refuse') {
      throw failedPrecondition('a DELETE of this environment is queued or running');
    }
    if (action === 'ROLLBACK') {
      const target = await tx.run(request.toDeploymentId);
      if (!target || target.environmentId !== request.environmentId) {
        throw notFound('deployment', request.toDeploymentId, 'to_deployment_id');
      }
      if (target.status !== 'SUCCEEDED') {
        throw failedPrecondition(
          `can only roll back to a run that succeeded; that one ${target.status}`,
          'to_deployment_id',
        );
      }
    }
    // A queued request of the same action, requester, version and scope absorbs this one; the run
    // then deploys the environment as this, its latest request, saw it.
    const into = admission.type === 'merge' ? await tx.run(admission.into) : undefined;
    let row: RunRecord;
    if (into && admission.type === 'merge') {
      row = into;
      row.serviceIds = admission.serviceIds;
      row.forceBuild = admission.forceBuild;
    } else {
      row = {
        id: newId(),
        environmentId: request.environmentId,
        action,
        status: 'QUEUED',
        requester: request.requester,
        serviceIds,
        version: request.version,
        forceBuild: request.forceBuild,
        toDeploymentId: action === 'ROLLBACK' ? request.toDeploymentId : null,
        options,
        state: null,
        snapshot: null,
        message: '',
        eventSequence: 0,
        createdAt: new Date(ctx.now()),
        startedAt: null,
        finishedAt: null,
      };
    }
    row.snapshot = queuedSnapshotJson(snap);
    await tx.saveRun(row);
    await tx.addRequestKey(request.requestId, row.id);
    // Nothing runs: it starts now, and its first event says RUNNING. Otherwise it says where it waits
    // (unless a run that did start just told every queued run so).
    const { started, needsSnapshot } = await startNext(ctx, tx, request.environmentId, deleted);
    if (started.length === 0) await runEvent(ctx, tx, row, { write: 'sequence', deleted });
    return { id: row.id, merged: into !== undefined, needsSnapshot };
  });
  committed(ctx);
  if ('needsSnapshot' in result && result.needsSnapshot !== undefined) await kick(ctx, request.environmentId);
  const deployment = await getDeployment(ctx, result.id);
  return result.merged ? { ...deployment, merged: true } : deployment;
}

/** A resume: the request it repeats (app/runs-further.ts), submitted as any other. */
async function resume(ctx: Ctx, request: bus.ActionRequested): Promise<control.Deployment> {
  checkRequestId(request);
  const known = await byRequestId(ctx, request.requestId);
  if (known) return known;
  const snap = await fetchSnapshot(ctx, request.environmentId);
  const resolved = await ctx.store.read('reading the run to resume', (reads) => resumeRequest(reads, request, snap));
  return submit(ctx, { ...resolved.request, resumeDeploymentId: '' }, resolved.options, snap);
}

export async function cancel(ctx: Ctx, deploymentId: string): Promise<control.Deployment> {
  if (!UUID.test(deploymentId)) throw notFound('deployment', deploymentId, 'deployment_id');
  const environmentId = await ctx.store.read('reading a run', (reads) => reads.environmentOf(deploymentId));
  if (environmentId === undefined) throw notFound('deployment', deploymentId, 'deployment_id');
  const result = await ctx.store.inLane(environmentId, async (tx, deleted) => {
    const row = (await tx.run(deploymentId))!;
    let cancelJobs = false;
    let finished = false;
    if (row.status === 'QUEUED') {
      row.status = 'CANCELED';
      row.finishedAt = new Date(ctx.now());
      finished = true;
    } else if (row.state && !isTerminalRun(row.state.status)) {
      const canceled = requestCancel(row.state);
      cancelJobs = canceled.decisions.some((d) => d.type === 'cancelJobs');
      finished = await applyState(ctx, tx, row, canceled.state);
    } else {
      return { cancelJobs, finished };
    }
    await runEvent(ctx, tx, row, { write: 'progress', deleted });
    if (!finished) return { cancelJobs, finished };
    if (row.startedAt == null) await queueMoved(ctx, tx, environmentId, row.id);
    // The lane may be free: the next queued run starts in this commit.
    return { cancelJobs, finished, ...(await startNext(ctx, tx, environmentId, deleted)) };
  });
  committed(ctx);
  if (result.cancelJobs) ctx.deps.publishCancel(deploymentId);
  if ('needsSnapshot' in result && result.needsSnapshot !== undefined) await kick(ctx, environmentId);
  return getDeployment(ctx, deploymentId);
}

async function byRequestId(ctx: Ctx, requestId: string): Promise<control.Deployment | undefined> {
  const id = await ctx.store.read('reading a request key', (reads) => reads.runOfRequest(requestId));
  return id ? getDeployment(ctx, id) : undefined;
}
