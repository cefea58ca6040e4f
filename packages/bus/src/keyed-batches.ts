// Ordered by key, batched while busy: what a consumer with many slots needs when the messages of one
// key (a run, an environment) must be handled in stream order but different keys need not wait for
// each other.

import { activeContext, type Context, inContext } from '@stageline/telemetry';

interface Waiting<T> {
  item: T;
  done: (error?: unknown) => void;
  /** The trace context it was added in: a batch is handled in its first item's. */
  context: Context;
}

/**
 * Each key gets a queue: while one batch of its items is handled, the next ones wait, then go together
 * in one call. A batch that fails is handled again one item at a time, so one bad item fails (and is
 * redelivered or dead-lettered) alone. `add` resolves once its item was handled (or rejects with why).
 */
export class KeyedBatches<T> {
  readonly #key: (item: T) => string;
  readonly #apply: (items: T[]) => Promise<void>;
  readonly #queues = new Map<string, Waiting<T>[]>();

  constructor(key: (item: T) => string, apply: (items: T[]) => Promise<void>) {
    this.#key = key;
    this.#apply = apply;
  }

  add(item: T): Promise<void> {
    return this.addAll([item]);
  }

  /**
   * Adds items in order, all before any is handled: items of one key added together go in one batch
   * (unless a batch of that key is being handled: then they wait together behind it). Resolves once
   * every one was handled; rejects with the first failure.
   */
  addAll(items: readonly T[]): Promise<void> {
    const fresh: string[] = [];
    const added = items.map((item) => {
      const key = this.#key(item);
      return new Promise<void>((resolve, reject) => {
        const done = (error?: unknown) => (error === undefined ? resolve() : reject(error));
        const context = activeContext();
        const queue = this.#queues.get(key);
        if (queue !== undefined) {
          queue.push({ item, done, context });
          return;
        }
        this.#queues.set(key, [{ item, done, context }]);
        fresh.push(key);
      });
    });
    for (const key of fresh) void this.#drain(key);
    return Promise.all(added).then(() => undefined);
  }

  async #drain(key: string): Promise<void> {
    for (;;) {
      const batch = this.#queues.get(key) ?? [];
      if (batch.length === 0) {
        this.#queues.delete(key);
        return;
      }
      // Later items of this key queue up behind the batch taken now.
      this.#queues.set(key, []);
      try {
        await inContext(batch[0]!.context, () => this.#apply(batch.map((w) => w.item)));
        for (const w of batch) w.done();
      } catch (error) {
        if (batch.length === 1) {
          batch[0]!.done(error);
          continue;
        }
        for (const w of batch) {
          try {
            await inContext(w.context, () => this.#apply([w.item]));
            w.done();
          } catch (e) {
            w.done(e);
          }
        }
      }
    }
  }
}
