// Run events (DeploymentEvent, through the outbox): what a run looks like now or what changed in it,
// with its place in the queue, the environment's status and — when it ends — which services keep
// resources. Built inside the lane transaction that changed the run.
import { newId } from '@stageline/db';
import { bus, control } from '@stageline/proto';
import type { RunState } from '../domain/model.ts';
import { isTerminalRun } from '../domain/model.ts';
import { changedServices, environmentStatus } from '../domain/outcomes.ts';
import { queueStanding } from '../domain/queue.ts';
import { ACTIVE, type Ctx } from './context.ts';
import type { LaneTx, RunHead, RunReads, RunRecord } from './run-store.ts';
import { deploymentView, type Standing } from './wire.ts';

/** How the run's event takes the run's changes along into the store. */
export type RunWrite =
  /** What a job report changes (never the snapshot). */
  | 'progress'
  /** The whole run, snapshot included. */
  | 'whole'
  /** Only its event sequence (nothing else changed). */
  | 'sequence';

/**
 * The run's next event, in the outbox, after writing the run (`write`). With `before` (the state a
 * job report started from) an event that does not end the run carries only the services that changed
 * since (a delta, `partial`); otherwise the whole run. `deleted`: the lane's flag as the lock found it.
 */
export async function runEvent(
  ctx: Ctx,
  tx: LaneTx,
  run: RunHead | RunRecord,
  opts: { write: RunWrite; deleted?: boolean; before?: RunState },
): Promise<void> {
  run.eventSequence += 1;
  const diff = opts.before && run.state ? changedServices(opts.before, run.state) : undefined;
  if (opts.write === 'whole') await tx.saveRun(run as RunRecord);
  else if (opts.write === 'progress') await tx.writeProgress(run, diff ?? 'all');
  else await tx.writeSequences([run]);
  // A run that ends sends itself whole (control's end-of-run bookkeeping reads it).
  const changed = run.state && !isTerminalRun(run.state.status) ? diff : undefined;
  const open = run.status === 'QUEUED' ? await tx.openRuns(run.environmentId) : undefined;
  const status = await environmentStatusOf(tx, run.environmentId, run, opts.deleted, open);
  enqueueEvent(ctx, tx, run, {
    standing: open === undefined ? undefined : queueStanding(open.map(standingOf), run.id),
    changed,
    environmentStatus: status,
    hasResources: await resourcesAfter(tx, run),
  });
}

function enqueueEvent(
  ctx: Ctx,
  tx: LaneTx,
  run: RunHead,
  e: {
    standing: Standing | undefined;
    changed: ReadonlySet<string> | undefined;
    environmentStatus: control.EnvironmentStatus;
    hasResources: Record<string, boolean>;
  },
): void {
  const whole = deploymentView(run, e.standing);
  const changed = e.changed;
  const deployment =
    changed === undefined ? whole : { ...whole, services: whole.services.filter((s) => changed.has(s.serviceId)) };
  const eventId = newId();
  const payload = bus.DeploymentEvent.encode({
    eventId,
    occurredAt: new Date(ctx.now()),
    deployment,
    sequence: run.eventSequence,
    partial: changed !== undefined,
    hasResources: e.hasResources,
    environmentStatus: e.environmentStatus,
    planner: ctx.deps.instance ?? '',
  }).finish();
  tx.enqueue({ id: eventId, subject: ctx.deps.subjects.runEvents(run.environmentId, run.id), payload });
}

/**
 * The queue moved (a run started, or a queued one went): each run still queued says where it stands
 * now — one read of the queue, one write of their event sequences.
 */
export async function queueMoved(ctx: Ctx, tx: LaneTx, environmentId: string, except: string): Promise<void> {
  const open = await tx.openRuns(environmentId);
  const queued = open.filter((r) => r.status === 'QUEUED' && r.id !== except);
  if (queued.length === 0) return;
  const status = await environmentStatusOf(tx, environmentId, undefined, undefined, open);
  const standings = open.map(standingOf);
  for (const r of queued) {
    r.eventSequence += 1;
    enqueueEvent(ctx, tx, r, {
      standing: queueStanding(standings, r.id),
      changed: undefined,
      environmentStatus: status,
      hasResources: {},
    });
  }
  await tx.writeSequences(queued);
}

export const standingOf = (r: RunHead) => ({ id: r.id, status: r.status, createdAt: r.createdAt.getTime() });

/** While QUEUED: its position and the run it waits for (domain/queue.ts). */
export async function standingIn(reads: RunReads, run: RunHead): Promise<Standing> {
  if (run.status !== 'QUEUED') return { position: 0, waitsFor: '' };
  const open = await reads.openRuns(run.environmentId);
  return queueStanding(open.map(standingOf), run.id);
}

/**
 * The environment's status (domain/outcomes.ts), read as little as possible: under the lane lock at
 * most one run is active, and when it is `current` it alone decides.
 */
async function environmentStatusOf(
  tx: LaneTx,
  environmentId: string,
  current: RunHead | undefined,
  /** The lane's deleted flag as the lock found it, when the caller has it. */
  deleted: boolean | undefined,
  openKnown: RunHead[] | undefined,
): Promise<control.EnvironmentStatus> {
  const S = control.EnvironmentStatus;
  if (deleted === false && current?.state != null && ACTIVE.includes(current.status)) {
    const name = environmentStatus({
      deleted: false,
      active: { action: current.action, state: current.state },
      anyOpen: true,
      services: [],
    });
    if (name !== 'QUEUED') return S[`ENVIRONMENT_STATUS_${name}`];
  }
  // The run may have deleted the environment in this very transaction: the lane is read again.
  if (await tx.laneDeleted(environmentId)) return S.ENVIRONMENT_STATUS_DELETED;
  const open = openKnown ?? (await tx.openRuns(environmentId));
  const activeRun = open.find((r) => ACTIVE.includes(r.status));
  const active =
    activeRun === undefined
      ? undefined
      : {
          action: activeRun.action,
          state: current?.id === activeRun.id ? (current.state ?? null) : (activeRun.state ?? null),
        };
  const services = open.length > 0 ? [] : await tx.serviceStatuses(environmentId);
  return S[`ENVIRONMENT_STATUS_${environmentStatus({ deleted: false, active, anyOpen: open.length > 0, services })}`];
}

/** When the run has ended: whether each of its services has resources now (control takes this rule). */
async function resourcesAfter(tx: LaneTx, run: RunHead): Promise<Record<string, boolean>> {
  if (!run.state || !isTerminalRun(run.state.status)) return {};
  const resources = new Map((await tx.serviceStatuses(run.environmentId)).map((s) => [s.serviceId, s.hasResources]));
  return Object.fromEntries(
    run.state.services.flatMap((s) => {
      const has = resources.get(s.serviceId);
      return has === undefined ? [] : [[s.serviceId, has]];
    }),
  );
}
