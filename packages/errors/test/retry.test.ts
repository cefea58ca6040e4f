import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffMs, RetriesExhausted, retrying } from '../src/index.ts';

const policy = { baseMs: 100, maxMs: 2_000, deadlineMs: 10_000 };

describe('backoffMs', () => {
  it('keeps a random half of the capped exponential step', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 5_000 }),
        fc.integer({ min: 0, max: 60_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, baseMs, extra, random) => {
          const maxMs = baseMs + extra;
          const step = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
          const delay = backoffMs(attempt, { baseMs, maxMs }, random);
          expect(delay).toBeGreaterThanOrEqual(Math.floor(step / 2));
          expect(delay).toBeLessThanOrEqual(Math.ceil(step));
          expect(delay).toBeLessThanOrEqual(maxMs);
        },
      ),
    );
  });

  it('never shrinks from one attempt to the next at the same randomness', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60 }), fc.double({ min: 0, max: 1, noNaN: true }), (attempt, r) => {
        expect(backoffMs(attempt + 1, policy, r)).toBeGreaterThanOrEqual(backoffMs(attempt, policy, r));
      }),
    );
  });
});

/** A fake clock: pauses advance it instead of waiting. */
function clock() {
  let t = 0;
  return {
    now: () => t,
    sleep: async (ms: number) => {
      t += ms;
    },
  };
}

describe('retrying', () => {
  it('retries transient errors until the work succeeds', async () => {
    const c = clock();
    let calls = 0;
    const result = await retrying(
      async () => {
        calls++;
        if (calls < 4) throw new Error('blink');
        return 'done';
      },
      { what: 'test', policy, isTransient: () => true, ...c, random: () => 0.5 },
    );
    expect(result).toBe('done');
    expect(calls).toBe(4);
  });

  it('throws a non-transient error at once, as it is', async () => {
    const c = clock();
    const bad = new Error('bad request');
    let calls = 0;
    await expect(
      retrying(
        async () => {
          calls++;
          throw bad;
        },
        { what: 'test', policy, isTransient: (e) => e !== bad, ...c },
      ),
    ).rejects.toBe(bad);
    expect(calls).toBe(1);
  });

  it('gives up inside the deadline with the last error, the attempts and what was tried', () =>
    fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 30_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        async (deadlineMs, r) => {
          const c = clock();
          let calls = 0;
          const error = await retrying(
            async () => {
              calls++;
              throw new Error(`down ${calls}`);
            },
            {
              what: 'saving a thing',
              policy: { ...policy, deadlineMs },
              isTransient: () => true,
              ...c,
              random: () => r,
            },
          ).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(RetriesExhausted);
          const exhausted = error as RetriesExhausted;
          expect(exhausted.attempts).toBe(calls);
          expect(exhausted.message).toContain('saving a thing');
          expect(exhausted.message).toContain(`down ${calls}`);
          // No attempt starts past the deadline.
          expect(c.now()).toBeLessThan(Math.max(deadlineMs, 1));
        },
      ),
    ));
});
