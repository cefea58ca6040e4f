// Reads: a run, a page of an environment's runs, and the dry run of a request (a plan, with the build
// service's cache predictions). Nothing here writes.
import { newId } from '@stageline/db';
import { invalidArgument, notFound } from '@stageline/errors';
import type { build, bus, control } from '@stageline/proto';
import type { RunState, ServiceRun } from '../domain/model.ts';
import { expectedSteps } from '../domain/plan.ts';
import { queueStanding } from '../domain/queue.ts';
import { type Ctx, checkCustomCharts, fetchSnapshot, parseVersion, type Snapshot, UUID } from './context.ts';
import { buildJobOf } from './dispatch.ts';
import { planFor } from './planning.ts';
import { standingIn, standingOf } from './run-events.ts';
import { checkVersions, explainRollback, optionsOf } from './runs-further.ts';
import { actionName, deploymentView } from './wire.ts';

export async function getDeployment(ctx: Ctx, deploymentId: string): Promise<control.Deployment> {
  return (await getRun(ctx, deploymentId)).deployment;
}

/** A whole run, and the sequence of its latest event that it includes (readers of deltas resync with it). */
export async function getRun(
  ctx: Ctx,
  deploymentId: string,
): Promise<{ deployment: control.Deployment; eventSequence: number }> {
  if (!UUID.test(deploymentId)) throw notFound('deployment', deploymentId, 'deployment_id');
  const found = await ctx.store.read('reading a run', async (reads) => {
    const row = await reads.run(deploymentId);
    return row
      ? { deployment: deploymentView(row, await standingIn(reads, row)), eventSequence: row.eventSequence }
      : undefined;
  });
  if (!found) throw notFound('deployment', deploymentId, 'deployment_id');
  return found;
}

export async function listDeployments(
  ctx: Ctx,
  req: { environmentId: string; pageSize: number; pageToken: string },
): Promise<{ deployments: control.Deployment[]; nextPageToken: string }> {
  if (!UUID.test(req.environmentId)) throw invalidArgument('environment_id', 'must be an environment id');
  if (req.pageSize > 500) throw invalidArgument('page_size', 'must be at most 500');
  const size = req.pageSize || 50;
  let before: string | undefined;
  if (req.pageToken !== '') {
    before = Buffer.from(req.pageToken, 'base64url').toString();
    if (!UUID.test(before)) throw invalidArgument('page_token', 'is not a token from a previous page');
  }
  const { rows, deployments } = await ctx.store.read('listing runs', async (reads) => {
    const found = await reads.runs(req.environmentId, { before, limit: size + 1 });
    const page = found.slice(0, size);
    // Where the queued ones stand: the queue read once.
    const open = page.some((r) => r.status === 'QUEUED')
      ? (await reads.openRuns(req.environmentId)).map(standingOf)
      : [];
    const views = page.map((r) => deploymentView(r, queueStanding(open, r.id)));
    return { rows: found, deployments: views };
  });
  const page = rows.slice(0, size);
  return {
    deployments,
    nextPageToken: rows.length > size ? Buffer.from(page.at(-1)!.id).toString('base64url') : '',
  };
}

/** The dry run: what would mirror, build, deploy, be skipped. Nothing is stored or sent. */
export async function plan(ctx: Ctx, request: bus.ActionRequested): Promise<control.Deployment> {
  const action = actionName(request.action);
  if (!action) throw invalidArgument('action', 'is required');
  if (!UUID.test(request.environmentId)) throw invalidArgument('environment_id', 'must be an environment id');
  parseVersion(request.version);
  const snap = await fetchSnapshot(ctx, request.environmentId);
  for (const id of request.serviceIds) {
    if (!snap.services.some((s) => s.id === id)) throw notFound('service', id, 'service_ids');
  }
  checkVersions(request.versions, action, snap, parseVersion);
  checkCustomCharts(snap, action, request.serviceIds);
  const fake = {
    id: newId(),
    environmentId: request.environmentId,
    action,
    status: 'PLANNED',
    requester: request.requester,
    serviceIds: request.serviceIds,
    version: request.version,
    forceBuild: request.forceBuild,
    toDeploymentId: request.toDeploymentId || null,
    options: optionsOf(request, action),
    message: '',
    createdAt: new Date(ctx.now()),
    startedAt: null,
    finishedAt: null,
  };
  const predicted = await ctx.store.read('planning a run', async (reads) => {
    const state = await planFor(reads, fake, snap);
    const predicted: RunState = {
      ...state,
      status: 'PLANNED',
      services: state.services.map((s) => ({ ...s, steps: predictSteps(s) })),
    };
    await explainRollback(reads, predicted, snap, fake.toDeploymentId);
    return predicted;
  });
  await predictBuilds(ctx, fake, predicted, snap);
  return deploymentView({ ...fake, state: predicted });
}

/** The steps a plan expects, without times: what would mirror, build, deploy. */
function predictSteps(s: ServiceRun): RunState['services'][number]['steps'] {
  return expectedSteps(s).map((kind) => ({ kind, startedAt: 0, finishedAt: null, outcome: null, message: '' }));
}

/**
 * Asks the build service what each build or mirror of a plan would do and writes it into the
 * planned steps: CACHE_HIT where the mirror already has the image, otherwise why it would work.
 */
async function predictBuilds(
  ctx: Ctx,
  run: { id: string; environmentId: string },
  state: RunState,
  snap: Snapshot,
): Promise<void> {
  const planned = state.services.filter((s) => s.build !== null);
  if (planned.length === 0) return;
  const stepOf = (s: ServiceRun) =>
    s.steps.find((st) => st.kind === (s.build?.what === 'GIT' ? 'BUILD' : 'MIRROR_IMAGE'));
  const jobs = planned.map((s) =>
    buildJobOf({
      jobId: newId(),
      deploymentId: run.id,
      environmentId: run.environmentId,
      environment: snap.environment,
      service: snap.services.find((x) => x.id === s.serviceId)!,
      version: s.version,
      attempt: 1,
      what: s.build?.what === 'GIT' ? 'GIT' : 'MIRROR',
      forceBuild: state.forceBuild,
    }),
  );
  let predictions: build.BuildPrediction[];
  try {
    if (ctx.deps.predictBuilds === undefined) throw new Error('no build service to ask');
    predictions = await ctx.deps.predictBuilds(jobs);
  } catch (e) {
    ctx.deps.log.warn({ err: e, environmentId: run.environmentId }, 'could not predict builds for a plan');
    const why = e instanceof Error ? e.message : String(e);
    for (const s of planned) {
      const step = stepOf(s);
      if (step !== undefined) step.message = `no cache prediction (${why})`;
    }
    return;
  }
  const byJob = new Map(predictions.map((p) => [p.jobId, p]));
  planned.forEach((s, i) => {
    const p = byJob.get(jobs[i]!.jobId);
    const step = stepOf(s);
    if (p === undefined || step === undefined) return;
    step.message = p.cacheHit ? `predicted cache hit: ${p.detail}` : p.detail;
    if (p.cacheHit) step.outcome = 'CACHE_HIT';
    const clone = s.steps.find((st) => st.kind === 'GIT_CLONE');
    if (clone !== undefined && p.resolvedVersion.startsWith('commit:')) {
      clone.message = `would clone commit ${p.resolvedVersion.slice('commit:'.length)}`;
    }
  });
}
