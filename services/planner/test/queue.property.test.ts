import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ActionName } from '../src/domain/model.ts';
import { admit, inOrder, nextToStart, type OpenRun, type QueueRequest } from '../src/domain/queue.ts';

// Random streams of requests, starts and ends against the queue's policy: one run at a time, in
// request order; a queued run absorbs identical requests (never a rollback); nothing queues behind a
// DELETE; every request ends up in a run that covers it.

const actionArb = fc.constantFrom<ActionName>('DEPLOY', 'REDEPLOY', 'STOP', 'RESTART', 'DELETE', 'ROLLBACK');
const requestArb: fc.Arbitrary<QueueRequest> = fc.record({
  action: actionArb,
  requester: fc.constantFrom('ana', 'bo'),
  version: fc.constantFrom('', 'tag:v2'),
  serviceIds: fc.uniqueArray(fc.constantFrom('s1', 's2', 's3'), { maxLength: 3 }),
  forceBuild: fc.boolean(),
});
const stepArb = fc.oneof(
  { weight: 4, arbitrary: requestArb.map((r) => ({ type: 'request' as const, r })) },
  { weight: 2, arbitrary: fc.constant({ type: 'start' as const }) },
  { weight: 2, arbitrary: fc.constant({ type: 'end' as const }) },
);

const mergeable = (a: OpenRun, b: OpenRun) =>
  a.action !== 'ROLLBACK' &&
  a.action === b.action &&
  a.requester === b.requester &&
  a.version === b.version &&
  a.serviceIds.length > 0 === b.serviceIds.length > 0;

describe('the request queue (property)', () => {
  it('runs one at a time in request order, merges identical requests, and covers every request', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 40 }), (steps) => {
        let open: OpenRun[] = [];
        let clock = 0;
        for (const step of steps) {
          if (step.type === 'request') {
            const decision = admit(open, step.r);
            if (open.some((r) => r.action === 'DELETE')) {
              expect(decision).toEqual({ type: 'refuse', reason: 'delete-pending' });
              continue;
            }
            let run: OpenRun;
            if (decision.type === 'merge') {
              const into = open.find((r) => r.id === decision.into)!;
              expect(into.status).toBe('QUEUED');
              expect(step.r.action).not.toBe('ROLLBACK');
              run = { ...into, serviceIds: decision.serviceIds, forceBuild: decision.forceBuild };
              open = open.map((r) => (r.id === into.id ? run : r));
            } else {
              expect(decision.type).toBe('queue');
              clock++;
              run = { id: `r${String(clock).padStart(3, '0')}`, status: 'QUEUED', createdAt: clock, ...step.r };
              open = [...open, run];
            }
            // The run the request became does what it asked, on at least what it named.
            expect(run.action).toBe(step.r.action);
            if (step.r.serviceIds.length === 0) expect(run.serviceIds).toEqual([]);
            for (const s of step.r.serviceIds) expect(run.serviceIds).toContain(s);
            if (step.r.forceBuild) expect(run.forceBuild).toBe(true);
          } else if (step.type === 'start') {
            const next = nextToStart(open);
            const active = open.some((r) => r.status === 'RUNNING');
            const oldestQueued = inOrder(open).find((r) => r.status === 'QUEUED');
            expect(next).toBe(active ? undefined : oldestQueued?.id);
            if (next !== undefined) open = open.map((r) => (r.id === next ? { ...r, status: 'RUNNING' } : r));
          } else {
            open = open.filter((r) => r.status !== 'RUNNING');
          }
          expect(open.filter((r) => r.status === 'RUNNING').length).toBeLessThanOrEqual(1);
          const queued = open.filter((r) => r.status === 'QUEUED');
          for (const a of queued) for (const b of queued) if (a !== b) expect(mergeable(a, b)).toBe(false);
        }
      }),
    );
  });
});
