// Job results: a batch of job events of any number of runs applied in one transaction holding their
// lanes — per run every fact folded into its state, one scheduling step, one run event — and, when that
// ends a run, the next queued run of its environment started in the same transaction. Jobs past their
// deadline are failed the same way.
import { bus, control } from '@stageline/proto';
import { applyJobFact, type JobFact } from '../domain/schedule.ts';
import { type Ctx, committed, UUID } from './context.ts';
import { type DeadlineLimits, overdueJobs, PLANNER_FAILURE_SEQUENCE } from './deadlines.ts';
import { applyState } from './dispatch.ts';
import { toFact } from './job-facts.ts';
import { kick, startNext } from './queue-runs.ts';
import { runEvent } from './run-events.ts';
import type { LaneTx } from './run-store.ts';

/**
 * Job events, in stream order, applied in one transaction: per run every fact folded into its state,
 * then one scheduling step and one run event — what applying them one by one would decide, for one
 * write instead of one per event — and the runs of several environments together (their lanes taken
 * at once, their runs read in one statement, their progress and messages written in one): a batch
 * costs a few statements whatever the number of runs in it.
 */
export async function onJobEvents(ctx: Ctx, events: readonly bus.JobEvent[]): Promise<void> {
  const now = ctx.now();
  const factsOf = new Map<string, JobFact[]>();
  for (const e of events) {
    if (!UUID.test(e.deploymentId)) continue;
    const fact = toFact(e, now);
    if (fact === undefined) continue;
    const facts = factsOf.get(e.deploymentId);
    if (facts === undefined) factsOf.set(e.deploymentId, [fact]);
    else facts.push(fact);
  }
  // Only the environments (for their lanes; they never change): the runs are read under the locks.
  const runs: Array<{ id: string; environmentId: string; facts: JobFact[] }> = [];
  for (const [id, facts] of factsOf) {
    const environmentId = await environmentOf(ctx, id);
    if (environmentId !== undefined) runs.push({ id, environmentId, facts });
  }
  if (runs.length === 0) return;
  const environmentIds = [...new Set(runs.map((r) => r.environmentId))];
  const outcomes = await ctx.store.inLanes(environmentIds, async (tx, deletedOf) => {
    if (runs.length > 1)
      await tx.prefetch(
        runs.map((r) => r.id),
        environmentIds,
      );
    const decided: Array<{ environmentId: string; runId: string; finished: boolean; needsSnapshot?: string }> = [];
    for (const r of runs) {
      const deleted = deletedOf.get(r.environmentId) ?? false;
      decided.push({ environmentId: r.environmentId, runId: r.id, ...(await applyFacts(ctx, tx, r, deleted)) });
    }
    return decided;
  });
  committed(ctx);
  for (const o of outcomes) {
    if (!o.finished) continue;
    ctx.environments.delete(o.runId);
    if (o.needsSnapshot !== undefined) {
      // A queued run an older version wrote: it needs the environment fetched. The reports are applied
      // whatever happens next: when that fails (control away), the next sweep (kickAll) starts it.
      await kick(ctx, o.environmentId).catch((e: unknown) =>
        ctx.deps.log.warn(
          { err: e, environmentId: o.environmentId },
          'could not start the next queued run: the sweep will',
        ),
      );
    }
  }
}

/** One run's facts, in its lane: its new state, its jobs and event, and — when it ends — the next run started. */
async function applyFacts(
  ctx: Ctx,
  tx: LaneTx,
  r: { id: string; environmentId: string; facts: JobFact[] },
  deleted: boolean,
): Promise<{ finished: boolean; needsSnapshot?: string }> {
  const run = await tx.run(r.id);
  if (!run?.state) return { finished: false };
  const before = run.state;
  const next = r.facts.reduce(applyJobFact, before);
  if (next === before) return { finished: false };
  const finished = await applyState(ctx, tx, run, next);
  await runEvent(ctx, tx, run, { write: 'progress', deleted, before });
  if (!finished) return { finished };
  // The lane is free: the next queued run starts in this commit.
  const started = await startNext(ctx, tx, r.environmentId, deleted);
  return { finished, ...(started.needsSnapshot !== undefined ? { needsSnapshot: started.needsSnapshot } : {}) };
}

/** The environment of a run, remembered: every report of a run needs it before it takes the lane. */
async function environmentOf(ctx: Ctx, deploymentId: string): Promise<string | undefined> {
  const known = ctx.environments.get(deploymentId);
  if (known !== undefined) return known;
  const found = await ctx.store.read("reading a run's environment", (reads) => reads.environmentOf(deploymentId));
  if (found === undefined) return undefined;
  // Runs end and are forgotten; a bound keeps a planner that misses their ends from growing.
  if (ctx.environments.size >= 10_000) ctx.environments.clear();
  ctx.environments.set(deploymentId, found);
  return found;
}

/**
 * No run hangs: every job of a running run that is past its deadline (app/deadlines.ts) gets a failed
 * result with the reason, and its run goes on by the failure rules. Safe to call any time (a late
 * worker's result for such a job changes nothing). Returns how many jobs were failed.
 */
export async function expireOverdueJobs(ctx: Ctx, limits?: DeadlineLimits): Promise<number> {
  const rows = await ctx.store.activeRuns();
  let failed = 0;
  for (const row of rows) {
    if (!row.state) continue;
    const services = (row.snapshot as { services?: { id?: string }[] } | null)?.services ?? [];
    const serviceOf = (id: string) => {
      const json = services.find((s) => s.id === id);
      return json === undefined ? undefined : control.Service.fromJSON(json);
    };
    const overdue = overdueJobs(row.state, serviceOf, ctx.now(), limits);
    if (overdue.length === 0) continue;
    for (const o of overdue) {
      ctx.deps.log.warn({ deploymentId: row.id, ...o }, 'job past its deadline: its service fails');
    }
    await onJobEvents(
      ctx,
      overdue.map((o) =>
        bus.JobEvent.fromPartial({
          jobId: o.jobId,
          deploymentId: row.id,
          serviceId: o.serviceId,
          sequence: PLANNER_FAILURE_SEQUENCE,
          event: {
            $case: 'jobFinished',
            value: bus.JobFinished.fromPartial({ succeeded: false, message: o.reason }),
          },
        }),
      ),
    );
    failed += overdue.length;
  }
  return failed;
}
