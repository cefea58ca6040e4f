// Starting queued runs. An environment runs one run at a time; the next queued one starts in the very
// transaction that frees the lane — the one that admits a request while nothing runs, or the one that
// ends the run ahead — from the environment snapshot its latest request brought along. A queued run
// written by an older version (no snapshot kept) and a crash between two runs are left to `kick`,
// which fetches the environment; the periodic sweep (kickAll) kicks every environment with a queue.
import { control } from '@stageline/proto';
import { nextToStart, type OpenRun } from '../domain/queue.ts';
import {
  type Ctx,
  chartedOnLocal,
  committed,
  queuedSnapshotOf,
  refuseCustomChart,
  type Snapshot,
  snapshotIfAny,
} from './context.ts';
import { applyState } from './dispatch.ts';
import { planFor } from './planning.ts';
import { queueMoved, runEvent } from './run-events.ts';
import type { LaneTx, RunHead, RunRecord } from './run-store.ts';
import { definitionsOfRun, resumedRun, unsafeToResume } from './runs-further.ts';

/** An open run as the queue's policy sees it. */
export function openRunOf(r: RunHead): OpenRun {
  return {
    id: r.id,
    action: r.action,
    status: r.status,
    requester: r.requester,
    version: r.version,
    serviceIds: r.serviceIds,
    forceBuild: r.forceBuild,
    createdAt: r.createdAt.getTime(),
    ...(r.options?.versions ? { versions: r.options.versions } : {}),
    resumeOf: r.options?.resumeOf ?? null,
  };
}

/**
 * While nothing runs, starts the next queued run (domain/queue.ts nextToStart) from the snapshot it
 * keeps; one that cannot start ends FAILED and the next is considered. Inside the lane transaction.
 * Returns the id of a queued run that keeps no snapshot (an older version's): `kick` starts it.
 * `fetched`: the environment as `kick` fetched it for that run.
 */
export async function startQueued(
  ctx: Ctx,
  tx: LaneTx,
  environmentId: string,
  deleted: boolean,
  fetched?: { id: string; snap: Snapshot | undefined },
): Promise<{ needsSnapshot?: string; started: string[] }> {
  const started: string[] = [];
  for (;;) {
    const id = nextToStart((await tx.openRuns(environmentId)).map(openRunOf));
    if (id === undefined) return { started };
    const row = await tx.run(id);
    if (row?.status !== 'QUEUED') return { started };
    let snap: Snapshot | undefined;
    if (row.snapshot != null) snap = queuedSnapshotOf(row.snapshot);
    else if (fetched?.id === id) snap = fetched.snap;
    else return { needsSnapshot: id, started };
    started.push(id);
    if (!(await startRun(ctx, tx, row, snap, deleted))) return { started };
  }
}

/**
 * The lane is free: the next queued run starts in this transaction. Set apart (a savepoint), so that a
 * run that fails to start in an unforeseen way never takes the caller's work (job reports, a request)
 * down with it: the sweep tries again.
 */
export async function startNext(
  ctx: Ctx,
  tx: LaneTx,
  environmentId: string,
  deleted: boolean,
): Promise<{ needsSnapshot?: string; started: string[] }> {
  const result = await tx.apart(() => startQueued(ctx, tx, environmentId, deleted));
  if (result.ok) return result.value;
  ctx.deps.log.warn({ err: result.error, environmentId }, 'could not start the next queued run: the sweep will');
  return { started: [] };
}

/**
 * Starts a queued run on `snap` (undefined: the environment is gone) — or ends it FAILED before its
 * first job when it cannot start: a custom chart on `local`, a resume the environment changed unsafely
 * since. Returns whether the run ended.
 */
async function startRun(
  ctx: Ctx,
  tx: LaneTx,
  row: RunRecord,
  snap: Snapshot | undefined,
  deleted: boolean,
): Promise<boolean> {
  const charted = snap && chartedOnLocal(snap, row.action, row.serviceIds);
  // A resume that waited: the environment may have changed unsafely since it was accepted.
  const previous = snap && (await resumedRun(tx, row.options));
  const unsafe = snap && previous && unsafeToResume(previous, snap);
  let finished: boolean;
  if (!snap || charted !== undefined || unsafe) {
    // Nothing has started: the run ends before its first job.
    row.status = 'FAILED';
    row.message = !snap
      ? 'the environment no longer exists'
      : unsafe || refuseCustomChart(charted ?? '', snap.environment.runtime).message;
    row.finishedAt = new Date(ctx.now());
    finished = true;
  } else {
    const state = await planFor(tx, row, snap);
    // A rollback deploys each service it restores as its target run did: image and configuration,
    // secrets included (kept sealed in the target's snapshot).
    const target =
      row.action === 'ROLLBACK' && row.toDeploymentId ? (await tx.run(row.toDeploymentId))?.snapshot : undefined;
    row.snapshot = {
      environment: control.Environment.toJSON(snap.environment),
      services: definitionsOfRun(snap, state, target),
    };
    row.startedAt = new Date(ctx.now());
    finished = await applyState(ctx, tx, row, state);
  }
  await runEvent(ctx, tx, row, { write: 'whole', deleted });
  await queueMoved(ctx, tx, row.environmentId, row.id);
  return finished;
}

/**
 * Starts the environment's next queued run if none is running. Safe to call any time, any number of
 * times: what the lane transactions start on their own, this finds started.
 */
export async function kick(ctx: Ctx, environmentId: string): Promise<void> {
  const next = await ctx.store.read("reading an environment's queue", async (reads) =>
    nextToStart((await reads.openRuns(environmentId)).map(openRunOf)),
  );
  if (next === undefined) return;
  let fetched: { id: string; snap: Snapshot | undefined } | undefined;
  for (;;) {
    const result = await ctx.store.inLane(environmentId, (tx, deleted) =>
      startQueued(ctx, tx, environmentId, deleted, fetched),
    );
    committed(ctx);
    if (result.needsSnapshot === undefined) return;
    // An older version's queued run: the environment as it is now.
    fetched = { id: result.needsSnapshot, snap: await snapshotIfAny(ctx, environmentId) };
  }
}

/** Every environment with queued work: called at start and by the sweep, so a crash between two runs loses nothing. */
export async function kickAll(ctx: Ctx): Promise<void> {
  const queues = await ctx.store.queueDepths();
  for (const { environmentId } of queues) {
    await kick(ctx, environmentId).catch((e: unknown) =>
      ctx.deps.log.warn({ err: e, environmentId }, 'could not start a queued run'),
    );
  }
}
