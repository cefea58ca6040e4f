// What a handler's result or failure means for its message. Errors are data (DomainError with a code
// and `retryable`), so one function decides for every handler: worth retrying → nak with a delay, not
// → dead letter.
import { DomainError, type ErrorCode } from '@stageline/errors';

/** Acknowledge: done (also what a handler resolving with nothing means). */
export interface AckOutcome {
  readonly ack: true;
}
/** Not now: redeliver after `delayMs` (nak with delay). */
export interface RetryOutcome {
  readonly retry: { readonly delayMs: number };
}
/** Never: copy to the dead-letter stream with `reason`, then terminate the message. */
export interface RejectOutcome {
  readonly reject: { readonly reason: string };
}
/**
 * Neither: this delivery is stale — a newer delivery of the same message is live elsewhere (a paused
 * worker resumed after its ack wait). Acking or naking it could settle or redeliver the live copy's.
 */
export interface LeaveOutcome {
  readonly leave: { readonly reason: string };
}
export type HandlerOutcome = AckOutcome | RetryOutcome | RejectOutcome | LeaveOutcome;

export const outcome = {
  ack: (): AckOutcome => ({ ack: true }),
  retry: (delayMs: number): RetryOutcome => ({ retry: { delayMs } }),
  reject: (reason: string): RejectOutcome => ({ reject: { reason } }),
  leave: (reason: string): LeaveOutcome => ({ leave: { reason } }),
} as const;

export interface RetryDelay {
  /** Delay after the first delivery fails. */
  baseMs: number;
  /** Ceiling of the exponential delay. */
  maxMs: number;
}

export const DEFAULT_RETRY_DELAY: Readonly<RetryDelay> = { baseMs: 1_000, maxMs: 60_000 };

/** Exponential in the delivery count (1 → base, 2 → 2×base, …), capped. */
export function retryDelayMs(deliveryCount: number, delay: RetryDelay = DEFAULT_RETRY_DELAY): number {
  const exponent = Math.max(0, Math.min(30, deliveryCount - 1));
  return Math.min(delay.maxMs, delay.baseMs * 2 ** exponent);
}

const describe = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

/**
 * The one place a handler failure becomes an outcome. A DomainError says itself whether it is worth
 * retrying; every code is listed so a new code forces a decision here. Anything else is unexpected
 * (a bug or a dependency hiccup): retried with backoff, and dead-lettered by the consume loop once
 * the delivery count reaches max_deliver.
 */
export function outcomeForError(
  e: unknown,
  deliveryCount = 1,
  delay: RetryDelay = DEFAULT_RETRY_DELAY,
): RetryOutcome | RejectOutcome {
  const retry = (): RetryOutcome => outcome.retry(retryDelayMs(deliveryCount, delay));
  if (!(e instanceof DomainError)) return retry();
  const code: ErrorCode = e.code;
  switch (code) {
    // The message itself is wrong or refers to what does not (or no longer) exist: retrying
    // changes nothing unless the thrower knows better (e.g. a read model not caught up yet).
    case 'INVALID_ARGUMENT':
    case 'NOT_FOUND':
    case 'ALREADY_EXISTS':
    case 'FAILED_PRECONDITION':
    // Whoever sent it may not: sending it again changes nothing.
    case 'UNAUTHENTICATED':
    case 'PERMISSION_DENIED':
    // A dependency is down: retry unless the thrower said it is permanent.
    case 'UNAVAILABLE':
    // Our own bug: retrying rarely helps, so only when explicitly marked retryable.
    case 'INTERNAL':
      return e.retryable ? retry() : outcome.reject(`${code}: ${e.message}`);
    default: {
      const unreachable: never = code;
      return outcome.reject(`unknown error code ${String(unreachable)}: ${describe(e)}`);
    }
  }
}

/** Reason text for a message given up on after too many deliveries. */
export function exhaustedReason(deliveryCount: number, last: HandlerOutcome | unknown): string {
  const lastText =
    last !== null && typeof last === 'object' && 'retry' in last ? 'handler asked to retry' : describe(last);
  return `gave up after ${deliveryCount} deliveries; last: ${lastText}`;
}
