import { control } from '@stageline/proto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  applyRunDelta,
  eventsToRecord,
  type FollowedRun,
  followRun,
  type RunEventView,
} from '../src/domain/run-events.ts';

// A run's events as the planner publishes them (the first and the last whole, the rest deltas of the
// services each change touched), delivered with gaps and from any starting point: the reader always
// ends on the run as it is, and shows the run exactly whenever no event was missed.

const S = control.ServiceState;
const states = [S.SERVICE_STATE_QUEUED, S.SERVICE_STATE_MIRRORING, S.SERVICE_STATE_DEPLOYING, S.SERVICE_STATE_DEPLOYED];

function runOf(
  statuses: control.ServiceState[],
  messages: string[],
  status: control.DeploymentStatus,
): control.Deployment {
  return control.Deployment.fromPartial({
    id: 'run',
    environmentId: 'env',
    status,
    stages: [{ stageId: 'st', name: 'stage', order: 0, status: control.StageStatus.STAGE_STATUS_ONGOING }],
    services: statuses.map((st, i) => ({
      serviceId: `sv${i}`,
      name: `svc-${i}`,
      status: st,
      message: messages[i] ?? '',
    })),
  });
}

interface History {
  /** The run after each event (index = sequence − 1). */
  truth: control.Deployment[];
  events: RunEventView[];
}

/** Each change touches some services; the planner's event carries those (or the whole run, first and last). */
const historyArb: fc.Arbitrary<History> = fc.integer({ min: 1, max: 8 }).chain((n) =>
  fc
    .array(
      fc.array(fc.record({ i: fc.nat(n - 1), st: fc.constantFrom(...states), msg: fc.string() }), { maxLength: 4 }),
      {
        minLength: 1,
        maxLength: 12,
      },
    )
    .map((changes) => {
      const statuses: control.ServiceState[] = Array.from({ length: n }, () => S.SERVICE_STATE_QUEUED);
      const messages = Array.from({ length: n }, () => '');
      const truth: control.Deployment[] = [];
      const events: RunEventView[] = [];
      changes.forEach((change, k) => {
        const touched = new Set<number>();
        for (const c of change) {
          statuses[c.i] = c.st;
          messages[c.i] = c.msg;
          touched.add(c.i);
        }
        const last = k === changes.length - 1;
        const run = runOf(
          statuses,
          messages,
          last
            ? control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED
            : control.DeploymentStatus.DEPLOYMENT_STATUS_RUNNING,
        );
        truth.push(run);
        const whole = k === 0 || last;
        events.push({
          deployment: whole ? run : { ...run, services: run.services.filter((_, i) => touched.has(i)) },
          sequence: k + 1,
          partial: !whole,
        });
      });
      return { truth, events };
    }),
);

describe('run events rebuilt from deltas (property)', () => {
  it('ends on the whole run despite lost events and any starting point, and is exact while none is lost', () => {
    fc.assert(
      fc.property(
        historyArb.chain((h) =>
          fc.record({
            h: fc.constant(h),
            // The whole run fetched at the start: after `base` events (0: before the first).
            base: fc.nat(h.events.length),
            // Where the stream replay starts (the last event before subscribing may be older or newer).
            from: fc.nat(h.events.length - 1),
            lost: fc.array(fc.boolean(), { minLength: h.events.length, maxLength: h.events.length }),
          }),
        ),
        ({ h, base, from, lost }) => {
          let followed: FollowedRun = {
            run: base === 0 ? runOf([], [], control.DeploymentStatus.DEPLOYMENT_STATUS_QUEUED) : h.truth[base - 1]!,
            sequence: base,
          };
          let missed = false;
          for (let k = from; k < h.events.length; k++) {
            // The terminal event is the subject's last: a reader always gets it.
            if (lost[k] && k < h.events.length - 1) {
              missed = true;
              continue;
            }
            const next = followRun(followed, h.events[k]!);
            // A resync fetches the whole run as committed, which includes at least this event.
            followed = next === 'resync' ? { run: h.truth[k]!, sequence: k + 1 } : next;
            if (!missed && k + 1 > base) expect(followed.run).toEqual(h.truth[k]);
          }
          expect(followed.run).toEqual(h.truth.at(-1));
          expect(followed.sequence).toBe(h.events.length);
        },
      ),
    );
  });

  it('a delta replaces services by id and keeps the others and their order', () => {
    const run = runOf(
      [S.SERVICE_STATE_QUEUED, S.SERVICE_STATE_QUEUED],
      ['a', 'b'],
      control.DeploymentStatus.DEPLOYMENT_STATUS_RUNNING,
    );
    const delta = runOf(
      [S.SERVICE_STATE_QUEUED, S.SERVICE_STATE_DEPLOYED],
      ['', 'done'],
      control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED,
    );
    delta.services = delta.services.slice(1);
    const after = applyRunDelta(run, delta);
    expect(after.services.map((s) => [s.serviceId, s.message])).toEqual([
      ['sv0', 'a'],
      ['sv1', 'done'],
    ]);
    expect(after.status).toBe(control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED);
  });

  it('asks for the whole run when a sequence number is missing, and ignores an event it already has', () => {
    const run = runOf([S.SERVICE_STATE_QUEUED], ['a'], control.DeploymentStatus.DEPLOYMENT_STATUS_RUNNING);
    const at3 = { run, sequence: 3 };
    expect(followRun(at3, { deployment: run, sequence: 5, partial: true })).toBe('resync');
    expect(followRun(at3, { deployment: run, sequence: 2, partial: true })).toBe(at3);
    expect(followRun(at3, { deployment: run, sequence: 3, partial: false })).toBe(at3);
  });
});

describe("an environment's run events recorded together", () => {
  it('keeps every event that ends a run, and the last one; a status overtaken by a later event is skipped', () => {
    const D = control.DeploymentStatus;
    const ev = (id: string, status: control.DeploymentStatus) => ({ deployment: runOf([], [], status), id });
    const events = [
      ev('a', D.DEPLOYMENT_STATUS_RUNNING),
      ev('b', D.DEPLOYMENT_STATUS_SUCCEEDED),
      ev('c', D.DEPLOYMENT_STATUS_RUNNING),
      ev('d', D.DEPLOYMENT_STATUS_RUNNING),
    ];
    expect(eventsToRecord(events).map((e) => e.id)).toEqual(['b', 'd']);
    expect(eventsToRecord([ev('x', D.DEPLOYMENT_STATUS_RUNNING)]).map((e) => e.id)).toEqual(['x']);
    expect(
      eventsToRecord([ev('y', D.DEPLOYMENT_STATUS_FAILED), ev('z', D.DEPLOYMENT_STATUS_CANCELED)]).map((e) => e.id),
    ).toEqual(['y', 'z']);
  });
});
