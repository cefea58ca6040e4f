// Transient faults are retried, not failures: one loop — exponential backoff with jitter inside a
// deadline — under the retry policies of @stageline/db (lost connections) and @stageline/grpc
// (UNAVAILABLE). Each policy decides what is transient; this decides how long to keep trying.

export interface RetryPolicy {
  /** The first pause (before jitter). */
  baseMs: number;
  /** No pause is longer than this. */
  maxMs: number;
  /** Attempts stop once this much time has passed since the first one began. */
  deadlineMs: number;
}

/**
 * The pause after failed attempt `attempt` (1 for the first): the exponential step
 * `min(maxMs, baseMs · 2^(attempt−1))`, of which a random half is kept ("equal jitter"), so that
 * many processes that lost the same server do not come back at the same instant.
 * `random` is in [0, 1). The result lies in [step / 2, step].
 */
export function backoffMs(attempt: number, policy: Pick<RetryPolicy, 'baseMs' | 'maxMs'>, random: number): number {
  const exponent = Math.min(Math.max(0, attempt - 1), 30);
  const step = Math.min(policy.maxMs, policy.baseMs * 2 ** exponent);
  const r = Math.min(Math.max(random, 0), 1);
  return Math.round(step / 2 + (step / 2) * r);
}

/** How a retry loop ended without success: the last error, the attempts made, the time spent. */
export class RetriesExhausted extends Error {
  readonly attempts: number;
  readonly elapsedMs: number;
  constructor(what: string, attempts: number, elapsedMs: number, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`${what}: still failing after ${attempts} attempts in ${(elapsedMs / 1000).toFixed(1)} s: ${reason}`, {
      cause,
    });
    this.name = 'RetriesExhausted';
    this.attempts = attempts;
    this.elapsedMs = elapsedMs;
  }
}

export interface RetryOptions {
  /** What is being tried, for messages and logs (`"deploy: recording a job's result"`). */
  what: string;
  policy: RetryPolicy;
  /** True for a fault worth another attempt; anything else is thrown at once. */
  isTransient(error: unknown): boolean;
  /** Called before each pause (for logging). */
  onRetry?(info: { error: unknown; attempt: number; delayMs: number }): void;
  /** Stops the pauses early: the last error is thrown. */
  signal?: AbortSignal;
  /** Clock, randomness and pause: tests replace them. */
  now?(): number;
  random?(): number;
  sleep?(ms: number, signal?: AbortSignal): Promise<void>;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Runs `work` until it succeeds, a non-transient error is thrown (rethrown as it is), or the next
 * attempt would start past the deadline (RetriesExhausted, its cause the last error). `work` receives
 * the attempt number (1 for the first) and the time left before the deadline.
 */
export async function retrying<T>(
  work: (attempt: number, remainingMs: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const pause = options.sleep ?? sleep;
  const started = now();
  const deadline = started + options.policy.deadlineMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await work(attempt, Math.max(0, deadline - now()));
    } catch (error) {
      if (!options.isTransient(error)) throw error;
      const delayMs = backoffMs(attempt, options.policy, random());
      if (now() + delayMs >= deadline || options.signal?.aborted) {
        throw new RetriesExhausted(options.what, attempt, now() - started, error);
      }
      options.onRetry?.({ error, attempt, delayMs });
      await pause(delayMs, options.signal);
    }
  }
}
