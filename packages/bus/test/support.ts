// Shared by the bus tests: a real NATS server, a random prefix per test file, cleanup by prefix.
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { createLogger } from '@stageline/log';
import { Bus } from '../src/index.ts';

export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
export const silentLog = createLogger({ service: 'bus-test', level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export const randomPrefix = (): string => `t_${randomBytes(6).toString('hex')}`;
export const randomId = (label = 'id'): string => `${label}-${randomBytes(4).toString('hex')}`;

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
export const decode = (b: Uint8Array): string => new TextDecoder().decode(b);

export async function connectBus(prefix: string, name = 'bus-test'): Promise<Bus> {
  return await Bus.connect({ url: NATS_URL, prefix, name, log: silentLog });
}

/** Delete every stream of `prefix` (streams are `<PREFIX>_…`); consumers go with them. */
export async function deletePrefixStreams(prefix: string): Promise<string[]> {
  const nc = await connect({ servers: NATS_URL });
  try {
    const jsm = await jetstreamManager(nc);
    const mine: string[] = [];
    for await (const name of jsm.streams.names()) {
      if (name.startsWith(`${prefix.toUpperCase()}_`)) mine.push(name);
    }
    await Promise.all(mine.map((n) => jsm.streams.delete(n)));
    return mine;
  } finally {
    await nc.close();
  }
}

/** Wait for a condition (a deadline for progress, not an assertion on how long it took). */
export async function eventually<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  deadlineMs = 15_000,
): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Parks handlers until the test lets them go. */
export class Gate {
  #waiting: (() => void)[] = [];
  #open = false;
  get parked(): number {
    return this.#waiting.length;
  }
  pass(): Promise<void> {
    if (this.#open) return Promise.resolve();
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
  /** Release everyone, now and later (test cleanup). */
  open(): void {
    this.#open = true;
    this.releaseAll();
  }
  /** Let the longest-parked handler go. */
  releaseOne(): void {
    this.#waiting.shift()?.();
  }
  releaseAll(): void {
    const w = this.#waiting;
    this.#waiting = [];
    for (const r of w) r();
  }
}
