// Job results: a batch of one run's job events applied in one lane transaction — every fact folded
// into the run state, one scheduling step, one run event — and, when that ends the run, the next
// queued run started in the same transaction. Jobs past their deadline are failed the same way.
import { bus, control } from '@stageline/proto';
import { applyJobFact } from '../domain/schedule.ts';
import { type Ctx, committed, UUID } from './context.ts';
import { type DeadlineLimits, overdueJobs, PLANNER_FAILURE_SEQUENCE } from './deadlines.ts';
import { applyState } from './dispatch.ts';
import { toFact } from './job-facts.ts';
import { kick, startNext } from './queue-runs.ts';
import { runEvent } from './run-events.ts';

/**
 * Events of one run, in stream order, applied in one transaction: what applying them one by one would
 * decide, for one write instead of one per event. Events of other runs are ignored (callers group by run).
 */
export async function onJobEvents(ctx: Ctx, events: readonly bus.JobEvent[]): Promise<void> {
  const deploymentId = events[0]?.deploymentId ?? '';
  if (!UUID.test(deploymentId)) return;
  const now = ctx.now();
  const facts = events
    .filter((e) => e.deploymentId === deploymentId)
    .map((e) => toFact(e, now))
    .filter((f) => f !== undefined);
  if (facts.length === 0) return;
  // Only the environment (for its lane; it never changes): the run is read under the lock.
  const environmentId = await environmentOf(ctx, deploymentId);
  if (environmentId === undefined) return;
  const outcome = await ctx.store.inLane(environmentId, async (tx, deleted) => {
    const run = await tx.run(deploymentId);
    if (!run?.state) return { finished: false };
    const before = run.state;
    const next = facts.reduce(applyJobFact, before);
    if (next === before) return { finished: false };
    const finished = await applyState(ctx, tx, run, next);
    await runEvent(ctx, tx, run, { write: 'progress', deleted, before });
    if (!finished) return { finished };
    // The lane is free: the next queued run starts in this commit.
    return { finished, ...(await startNext(ctx, tx, environmentId, deleted)) };
  });
  committed(ctx);
  if (!outcome.finished) return;
  ctx.environments.delete(deploymentId);
  if ('needsSnapshot' in outcome && outcome.needsSnapshot !== undefined) {
    // A queued run an older version wrote: it needs the environment fetched. The reports are applied
    // whatever happens next: when that fails (control away), the next sweep (kickAll) starts it.
    await kick(ctx, environmentId).catch((e: unknown) =>
      ctx.deps.log.warn({ err: e, environmentId }, 'could not start the next queued run: the sweep will'),
    );
  }
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
