import { control } from '@stageline/proto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  changeNothing,
  FINISHED,
  type RecordedRuns,
  type RunEventFacts,
  recordRunEvents,
} from '../src/domain/run-events.ts';

// What control records of run events, decided as a function of what it has: recorded together or one
// at a time, the same writes and the same result; nothing for events that say nothing new; and the
// events it skips without a statement (`changeNothing`) are ones that would have written nothing.

const S = control.ServiceState;
const E = control.EnvironmentStatus;
const SERVICE_IDS = ['a', 'b', 'c'];

const endpoints = fc.array(
  fc.record({ port: fc.constantFrom(80, 8080), url: fc.constantFrom('http://x', 'http://y') }),
  { maxLength: 1 },
);
const envStatus = fc.constantFrom(
  E.ENVIRONMENT_STATUS_UNSPECIFIED,
  E.ENVIRONMENT_STATUS_QUEUED,
  E.ENVIRONMENT_STATUS_BUILDING,
  E.ENVIRONMENT_STATUS_DEPLOYING,
  E.ENVIRONMENT_STATUS_DEPLOYED,
  E.ENVIRONMENT_STATUS_DELETED,
);
const recorded: fc.Arbitrary<RecordedRuns> = fc.record({
  status: envStatus.filter((s) => s !== E.ENVIRONMENT_STATUS_UNSPECIFIED),
  services: fc
    .tuple(fc.boolean(), fc.boolean(), fc.boolean(), endpoints, endpoints, endpoints)
    .map(([ha, hb, hc, ea, eb, ec]) => [
      { id: 'a', hasResources: ha, endpoints: ea },
      { id: 'b', hasResources: hb, endpoints: eb },
      { id: 'c', hasResources: hc, endpoints: ec },
    ]),
});
const event: fc.Arbitrary<RunEventFacts> = fc
  .record({
    run: fc.constantFrom('r1', 'r2'),
    status: envStatus,
    deploymentStatus: fc.constantFrom(
      control.DeploymentStatus.DEPLOYMENT_STATUS_RUNNING,
      control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED,
      control.DeploymentStatus.DEPLOYMENT_STATUS_FAILED,
    ),
    services: fc.subarray(SERVICE_IDS).chain((ids) =>
      fc.tuple(
        ...ids.map((id) =>
          fc.record({
            serviceId: fc.constant(id),
            status: fc.constantFrom(
              S.SERVICE_STATE_DEPLOYED,
              S.SERVICE_STATE_STOPPED,
              S.SERVICE_STATE_DELETED,
              S.SERVICE_STATE_QUEUED,
            ),
            endpoints,
          }),
        ),
      ),
    ),
    hasResources: fc.dictionary(fc.constantFrom(...SERVICE_IDS), fc.boolean()),
    sequence: fc.nat(20),
  })
  .map((e) => ({
    deployment: control.Deployment.fromPartial({ id: e.run, status: e.deploymentStatus, services: e.services }),
    status: e.status,
    hasResources: e.hasResources,
    sequence: e.sequence,
  }));

describe('recording run events', () => {
  it('together writes what one at a time writes, and ends on the same environment', () => {
    fc.assert(
      fc.property(recorded, fc.array(event, { maxLength: 6 }), (current, events) => {
        const together = recordRunEvents(current, events);
        let state = current;
        const writes = [];
        for (const e of events) {
          const one = recordRunEvents(state, [e]);
          writes.push(...one.writes);
          state = one.next;
        }
        expect(together.writes).toEqual(writes);
        expect(together.next).toEqual(state);
        // The changed services are exactly those whose run state differs from what was recorded.
        expect(together.changedServiceIds).toEqual(
          state.services.filter((s, i) => JSON.stringify(s) !== JSON.stringify(current.services[i])).map((s) => s.id),
        );
      }),
    );
  });

  it('writes nothing for the last event again, nor for events that say no status', () => {
    fc.assert(
      fc.property(recorded, fc.array(event, { minLength: 1, maxLength: 6 }), (current, events) => {
        const after = recordRunEvents(current, events).next;
        expect(recordRunEvents(after, [events.at(-1)!]).writes).toEqual([]);
        const silent = events.map((e) => ({ ...e, status: E.ENVIRONMENT_STATUS_UNSPECIFIED }));
        expect(recordRunEvents(current, silent)).toEqual({ writes: [], next: current, changedServiceIds: [] });
      }),
    );
  });

  it('changes services only on an event that ends a run, and the status to the last one said', () => {
    fc.assert(
      fc.property(recorded, fc.array(event, { maxLength: 6 }), (current, events) => {
        const ongoing = events.filter((e) => !FINISHED.includes(e.deployment.status));
        const r = recordRunEvents(current, ongoing);
        expect(r.next.services).toEqual(current.services);
        const said = ongoing.filter((e) => e.status !== E.ENVIRONMENT_STATUS_UNSPECIFIED).at(-1);
        expect(r.next.status).toBe(said?.status ?? current.status);
      }),
    );
  });

  it('skips without a statement only events that would write nothing', () => {
    fc.assert(
      fc.property(
        recorded,
        fc.constantFrom('r1', 'r2'),
        fc.nat(10),
        fc.array(event, { maxLength: 5 }),
        fc.boolean(),
        (current, run, sequence, events, contiguous) => {
          // Half the time, the events continue the recorded run in order (the case worth skipping).
          const chain = contiguous
            ? events.map((e, i) => ({ ...e, deployment: { ...e.deployment, id: run }, sequence: sequence + 1 + i }))
            : events;
          const last = { deploymentId: run, sequence, status: current.status };
          if (changeNothing(last, chain)) {
            expect(recordRunEvents(current, chain).writes).toEqual([]);
            expect(chain.every((e) => e.deployment.id === run && !FINISHED.includes(e.deployment.status))).toBe(true);
          }
          // An unknown start, or a run whose sequence is unknown, is never skipped.
          expect(changeNothing(undefined, chain)).toBe(false);
          expect(changeNothing({ ...last, sequence: 0 }, chain)).toBe(false);
        },
      ),
    );
  });
});
