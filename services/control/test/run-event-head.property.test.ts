import { bus, control } from '@stageline/proto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readRunEventHead } from '../src/adapters/nats/run-event-head.ts';

// The head control reads off an encoded run event is what decoding the whole event says, whatever the
// rest of the event holds; bytes that are not an event never throw.

const text = fc.string({ maxLength: 40 });
const event = fc
  .record({
    eventId: text,
    id: text,
    environmentId: fc.uuid(),
    status: fc.nat(6).map((n) => n as control.DeploymentStatus),
    environmentStatus: fc.nat(11).map((n) => n as control.EnvironmentStatus),
    sequence: fc.nat(),
    partial: fc.boolean(),
    services: fc.array(
      fc.record({
        serviceId: text,
        name: text,
        status: fc.nat(12).map((n) => n as control.ServiceState),
        message: fc.string({ maxLength: 300 }),
      }),
      { maxLength: 4 },
    ),
    hasResources: fc.dictionary(text, fc.boolean(), { maxKeys: 3 }),
    requester: text,
    queuePosition: fc.nat(),
    versions: fc.dictionary(text, text, { maxKeys: 2 }),
  })
  .map((e) =>
    bus.DeploymentEvent.fromPartial({
      eventId: e.eventId,
      occurredAt: new Date(1_700_000_000_000),
      environmentStatus: e.environmentStatus,
      sequence: e.sequence,
      partial: e.partial,
      hasResources: e.hasResources,
      planner: 'host:1',
      deployment: {
        id: e.id,
        environmentId: e.environmentId,
        status: e.status,
        requester: e.requester,
        queuePosition: e.queuePosition,
        services: e.services,
        versions: e.versions,
        stages: [{ stageId: 's', name: 'stage', order: 1, status: control.StageStatus.STAGE_STATUS_ONGOING }],
        createdAt: new Date(1_700_000_000_000),
      },
    }),
  );

describe('the head of a run event, read off the wire', () => {
  it('says what the whole decode says', () => {
    fc.assert(
      fc.property(event, (e) => {
        const decoded = bus.DeploymentEvent.decode(bus.DeploymentEvent.encode(e).finish());
        expect(readRunEventHead(bus.DeploymentEvent.encode(e).finish())).toEqual({
          deployment: {
            id: decoded.deployment!.id,
            environmentId: decoded.deployment!.environmentId,
            status: decoded.deployment!.status,
          },
          status: decoded.environmentStatus,
          sequence: decoded.sequence,
        });
      }),
    );
  });

  it('is undefined for an event without a run, and never throws on other bytes', () => {
    expect(
      readRunEventHead(bus.DeploymentEvent.encode({ ...bus.DeploymentEvent.fromPartial({ sequence: 3 }) }).finish()),
    ).toBe(undefined);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        expect(() => readRunEventHead(bytes)).not.toThrow();
      }),
    );
  });
});
