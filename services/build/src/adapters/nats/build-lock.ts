// One build per cache key at a time, across every build process: a lock in a NATS KV bucket.
//
// `create` succeeds for one holder only. NATS 2.9 ignores per-key TTLs, so the bucket's max_age is the
// lease: the holder rewrites its key every third of it, and a holder that died (kill -9, lost host)
// stops refreshing — its key ages out and the next waiter takes over. Waiters poll; when the lock frees
// they look in the mirror first, where the holder's image now is.
import { type KV, Kvm } from '@nats-io/kv';
import type { Bus } from '@stageline/bus';
import type { Logger } from '@stageline/log';

export interface BuildLocksOptions {
  /** Lease: how long a lock outlives its last refresh (the bucket's max_age). */
  ttlMs: number;
  /** How often a waiter tries again. Default 250 ms. */
  pollMs?: number;
  log: Logger;
}

export interface HeldLock {
  /** True once a refresh failed: another holder may have taken the key. */
  readonly lost: boolean;
  release(): Promise<void>;
}

export interface AcquireOptions {
  /** Who holds it, for whoever waits (e.g. the job id). */
  holder: string;
  signal?: AbortSignal;
  /** Called once, when the key is found held by someone else. */
  onWait?: (holder: string) => void;
}

const WRONG_LAST_SEQUENCE = new Set([10071, 10164]);

function heldElsewhere(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return (typeof code === 'number' && WRONG_LAST_SEQUENCE.has(code)) || /wrong last sequence/i.test(String(e));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class BuildLocks {
  readonly #kv: KV;
  readonly #options: BuildLocksOptions;

  private constructor(kv: KV, options: BuildLocksOptions) {
    this.#kv = kv;
    this.#options = options;
  }

  static async open(bus: Bus, options: BuildLocksOptions): Promise<BuildLocks> {
    const kv = await new Kvm(bus.js).create(`${bus.subjects.streamPrefix}_build_locks`, {
      ttl: options.ttlMs,
      history: 1,
      replicas: bus.replicas,
    });
    return new BuildLocks(kv, options);
  }

  /** Waits until this caller holds the key; `waited` says whether someone else held it first. */
  async acquire(key: string, options: AcquireOptions): Promise<{ lock: HeldLock; waited: boolean }> {
    let waited = false;
    for (;;) {
      options.signal?.throwIfAborted();
      try {
        const revision = await this.#kv.create(key, new TextEncoder().encode(options.holder));
        return { lock: this.#held(key, revision, options.holder), waited };
      } catch (e) {
        if (!heldElsewhere(e)) throw e;
      }
      const current = await this.#kv.get(key).catch(() => null);
      const holder = current?.value ? new TextDecoder().decode(current.value) : '';
      if (current?.operation === 'PUT' && holder === options.holder) {
        // An earlier delivery of this very job holds it: its worker died (or, paused, has lost the job's
        // lease and stops). Take the lock over now rather than waiting out its lease.
        try {
          const revision = await this.#kv.update(key, new TextEncoder().encode(options.holder), current.revision);
          this.#options.log.info({ key, holder }, 'build lock taken over from an earlier delivery of the same job');
          return { lock: this.#held(key, revision, options.holder), waited };
        } catch (e) {
          if (!heldElsewhere(e)) throw e;
          continue;
        }
      }
      if (!waited) {
        waited = true;
        options.onWait?.(holder || 'another build');
      }
      await sleep(this.#options.pollMs ?? 250, options.signal);
    }
  }

  #held(key: string, firstRevision: number, holder: string): HeldLock {
    let revision = firstRevision;
    let lost = false;
    let released = false;
    let inflight: Promise<void> = Promise.resolve();
    const value = new TextEncoder().encode(holder);
    const refresh = setInterval(
      () => {
        if (released || lost) return;
        inflight = this.#kv.update(key, value, revision).then(
          (next) => {
            revision = next;
          },
          (e: unknown) => {
            lost = true;
            this.#options.log.warn({ err: e, key }, 'build lock lost: another build of this key may start');
          },
        );
      },
      Math.max(200, Math.floor(this.#options.ttlMs / 3)),
    );
    return {
      get lost() {
        return lost;
      },
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(refresh);
        await inflight;
        // Only our own revision: never delete a key someone else took over after we lost it.
        await this.#kv.delete(key, { previousSeq: revision }).catch(() => undefined);
      },
    };
  }
}
