// Items sent in order, one send at a time; the items queued while a send is in flight go together in
// the next one. Used by the worker for a job's reports: a 0 ms job's step start, step end and result
// travel as one message instead of three.

interface Queued<T> {
  item: T;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class CoalescingQueue<T> {
  readonly #send: (items: T[]) => Promise<void>;
  #pending: Queued<T>[] = [];
  /** A send is in flight or about to start. */
  #busy = false;
  #held = 0;
  /** Settles when the last item queued so far was sent (or failed): every earlier one has too. */
  #last: Promise<void> = Promise.resolve();

  constructor(send: (items: T[]) => Promise<void>) {
    this.#send = send;
  }

  /**
   * Queues `item`. The returned promise resolves once the send that carried it succeeded and rejects
   * with that send's error. The first send starts on the next turn of the event loop (setImmediate), so
   * items queued in the same turn already go together.
   */
  push(item: T): Promise<void> {
    const sent = new Promise<void>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
    });
    this.#last = sent.catch(() => undefined);
    this.#kick();
    return sent;
  }

  /** Holds the queued items back (nothing new is sent; a send in flight finishes) until `release`. */
  hold(): void {
    this.#held++;
  }

  release(): void {
    this.#held = Math.max(0, this.#held - 1);
    this.#kick();
  }

  /** Resolves once every item queued so far has been sent or has failed (call after `release`). */
  idle(): Promise<void> {
    return this.#last;
  }

  #kick(): void {
    if (this.#busy || this.#held > 0 || this.#pending.length === 0) return;
    this.#busy = true;
    setImmediate(() => void this.#pump());
  }

  async #pump(): Promise<void> {
    while (this.#held === 0 && this.#pending.length > 0) {
      const batch = this.#pending.splice(0);
      try {
        await this.#send(batch.map((q) => q.item));
        for (const q of batch) q.resolve();
      } catch (e) {
        for (const q of batch) q.reject(e);
      }
    }
    this.#busy = false;
    // Released while the last send was in flight, or items queued after the loop looked: go on.
    this.#kick();
  }
}
