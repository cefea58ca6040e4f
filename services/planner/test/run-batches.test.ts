// RunBatches: how the planner groups job events by run before applying them (the consumer around it
// is exercised end to end by the e2e tests).
import { bus } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { RunBatches } from '../src/adapters/nats/consumers.ts';

const event = (run: string, n: number) =>
  bus.JobEvent.fromPartial({ deploymentId: run, jobId: `${run}-${n}`, sequence: n });
const ids = (events: bus.JobEvent[]) => events.map((e) => e.jobId);

/** An apply function that holds each call until released, recording the batches it got. */
function gated() {
  const calls: string[][] = [];
  const gates: Array<() => void> = [];
  let failOn: string | undefined;
  const apply = (events: bus.JobEvent[]) => {
    calls.push(ids(events));
    return new Promise<void>((resolve, reject) => {
      gates.push(() =>
        failOn !== undefined && ids(events).includes(failOn) ? reject(new Error(`bad ${failOn}`)) : resolve(),
      );
    });
  };
  const releaseAll = async () => {
    while (gates.length > 0) {
      gates.shift()!();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { calls, apply, releaseAll, fail: (jobId: string) => (failOn = jobId) };
}

describe('RunBatches', () => {
  it('applies events in order, batching those that arrive while one is applied', async () => {
    const g = gated();
    const batches = new RunBatches(g.apply);
    const done = [1, 2, 3, 4].map((n) => batches.add(event('a', n)));
    // The first went alone; 2–4 queued behind it and go together.
    expect(g.calls).toEqual([['a-1']]);
    await g.releaseAll();
    await Promise.all(done);
    expect(g.calls).toEqual([['a-1'], ['a-2', 'a-3', 'a-4']]);
  });

  it('applies the events of every run that arrived meanwhile in one batch, each run in order', async () => {
    const g = gated();
    const batches = new RunBatches(g.apply);
    const done = [
      batches.add(event('a', 1)),
      batches.add(event('b', 1)),
      batches.add(event('a', 2)),
      batches.add(event('c', 1)),
      batches.add(event('b', 2)),
    ];
    // One batch at a time: the first went alone, the rest of every run wait and go together.
    expect(g.calls).toEqual([['a-1']]);
    await g.releaseAll();
    await Promise.all(done);
    expect(g.calls).toEqual([['a-1'], ['b-1', 'a-2', 'c-1', 'b-2']]);
  });

  it('a failing batch is retried one event at a time: only the bad event fails', async () => {
    const g = gated();
    const batches = new RunBatches(g.apply);
    const first = batches.add(event('a', 1));
    const rest = [2, 3, 4].map((n) =>
      batches.add(event('a', n)).then(
        () => 'ok',
        (e: unknown) => (e as Error).message,
      ),
    );
    g.fail('a-3');
    await g.releaseAll();
    await first;
    expect(await Promise.all(rest)).toEqual(['ok', 'bad a-3', 'ok']);
    expect(g.calls).toEqual([['a-1'], ['a-2', 'a-3', 'a-4'], ['a-2'], ['a-3'], ['a-4']]);
    // The run's queue is gone once drained: a later event starts a new batch at once.
    const later = batches.add(event('a', 5));
    expect(g.calls.at(-1)).toEqual(['a-5']);
    await g.releaseAll();
    await later;
  });
});
