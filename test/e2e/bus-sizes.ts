// Measures what goes over the bus: the largest message per subject family, from a core NATS
// subscription to every subject of the stack's prefix (JetStream publishes are seen there too).
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll } from 'vitest';
import type { Stack } from './stack.ts';

export const MAX_PAYLOAD = 1024 * 1024;

/** The largest message seen per family (`events.environments`, `jobs.deploy`, `logs`, …), for the file's tests. */
export function useBusSizes(stack: Stack) {
  const largest = new Map<string, number>();
  let close: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const nc = await connect({ servers: stack.isolated.natsUrl });
    const prefix = stack.isolated.busPrefix;
    const sub = nc.subscribe(`${prefix}.>`);
    void (async () => {
      for await (const m of sub) {
        const parts = m.subject.slice(prefix.length + 1).split('.');
        const family = parts.slice(0, parts[0] === 'logs' ? 1 : 2).join('.');
        largest.set(family, Math.max(largest.get(family) ?? 0, m.data.length));
      }
    })();
    close = () => nc.close();
  });
  afterAll(async () => {
    await close?.();
    const table = [...largest.entries()].sort((a, b) => b[1] - a[1]);
    console.log(
      `largest bus messages (bytes; max_payload ${MAX_PAYLOAD}):\n${table.map(([f, b]) => `  ${f}: ${b}`).join('\n')}`,
    );
  });
  return {
    largest,
    /** Waits (bounded) until `family` has seen a message of at least `bytes`; returns the largest seen. */
    async atLeast(family: string, bytes: number): Promise<number> {
      for (let i = 0; i < 300 && (largest.get(family) ?? 0) < bytes; i++) await new Promise((r) => setTimeout(r, 100));
      return largest.get(family) ?? 0;
    },
  };
}
