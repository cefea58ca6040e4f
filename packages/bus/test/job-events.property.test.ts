// Several reports of a job in one message (JobEvent.earlier): what goes in comes out, in order, and an
// old reader (the message's own fields only) gets the last event. The coalescing queue: items queued
// while a send is in flight go together, in order, and nothing is sent twice or lost.
import { bus as busv1, control } from '@stageline/proto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CoalescingQueue } from '../src/coalescing-queue.ts';
import { coalesceJobEvents, decodeJobEvents } from '../src/index.ts';

const event = fc
  .record({
    sequence: fc.integer({ min: 1, max: 4_000_000 }),
    kind: fc.constantFrom('stepStarted', 'stepFinished', 'jobFinished'),
    message: fc.string({ maxLength: 20 }),
  })
  .map(({ sequence, kind, message }): busv1.JobEvent => {
    const step = control.StepKind.STEP_KIND_BUILD;
    const payload: busv1.JobEvent['event'] =
      kind === 'stepStarted'
        ? { $case: 'stepStarted', value: busv1.StepStarted.fromPartial({ kind: step, message }) }
        : kind === 'stepFinished'
          ? { $case: 'stepFinished', value: busv1.StepFinished.fromPartial({ step: { kind: step, message } }) }
          : { $case: 'jobFinished', value: busv1.JobFinished.fromPartial({ succeeded: true, message }) };
    return {
      ...busv1.JobEvent.fromPartial({ jobId: 'job-1', deploymentId: 'run-1', serviceId: 'svc-1', sequence }),
      event: payload,
    };
  });

describe('JobEvent.earlier', () => {
  it('decodes a coalesced message into the events that went in, in order; an old reader gets the last', () => {
    fc.assert(
      fc.property(fc.array(event, { minLength: 1, maxLength: 6 }), (events) => {
        const data = busv1.JobEvent.encode(coalesceJobEvents(events)).finish();
        expect(decodeJobEvents(data)).toEqual(events);
        const { earlier: _, ...last } = busv1.JobEvent.decode(data);
        const { earlier: __, ...expected } = events.at(-1)!;
        expect(last).toEqual(expected);
      }),
    );
  });
});

describe('CoalescingQueue', () => {
  it('sends every item once, in order, one send at a time; items queued during a send go in the next', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.nat({ max: 3 }), { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 6 }),
        async (waves) => {
          const sends: number[][] = [];
          let inFlight = 0;
          let overlapped = false;
          const queue = new CoalescingQueue<number>(async (items) => {
            inFlight++;
            if (inFlight > 1) overlapped = true;
            sends.push(items);
            await new Promise((resolve) => setTimeout(resolve, 1));
            inFlight--;
          });
          let n = 0;
          const all: Promise<void>[] = [];
          for (const wave of waves) {
            for (const _ of wave) all.push(queue.push(n++));
            await new Promise((resolve) => setImmediate(resolve));
          }
          await Promise.all(all);
          await queue.idle();
          expect(overlapped).toBe(false);
          expect(sends.flat()).toEqual([...Array(n).keys()]);
          expect(sends.length).toBeLessThanOrEqual(waves.length);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('holds items back until released, then sends them together; a failed send rejects its items', async () => {
    const sends: string[][] = [];
    const queue = new CoalescingQueue<string>(async (items) => {
      sends.push(items);
      if (items.includes('bad')) throw new Error('refused');
    });
    queue.hold();
    const a = queue.push('a');
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(sends).toEqual([]);
    const b = queue.push('b');
    queue.release();
    await Promise.all([a, b]);
    expect(sends).toEqual([['a', 'b']]);
    await expect(queue.push('bad')).rejects.toThrow('refused');
    await queue.push('c');
    expect(sends).toEqual([['a', 'b'], ['bad'], ['c']]);
  });
});
