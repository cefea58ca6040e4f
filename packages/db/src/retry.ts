// The retry policy for database work: a lost or refused PostgreSQL connection (a restart, a failover, a
// blink of the network) and a serialization failure or deadlock are retried with backoff and jitter
// inside a deadline; anything else (a constraint, a bug) is thrown at once. Retried work is a whole
// unit — a read, or a transaction from its start — so it must be safe to run again: every store's is
// (they look up before they write, or write the same values again).
import { DomainError, RetriesExhausted, type RetryPolicy, retrying } from '@stageline/errors';
import type { Logger } from '@stageline/log';

/** About 30 s of trying: a PostgreSQL restart fits, a real outage ends as UNAVAILABLE. */
export const DEFAULT_DB_RETRY: RetryPolicy = { baseMs: 100, maxMs: 2_000, deadlineMs: 30_000 };

/** Network errors of the connection itself. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs worth another attempt: connection exceptions (class 08), the server shutting down or
 * starting (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now), too many
 * connections (53300), and a transaction that lost a race (40001 serialization_failure, 40P01
 * deadlock_detected: running it again is the cure).
 */
const TRANSIENT_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '40001', '40P01']);

/** What node-postgres says, without a code, when the server went away mid-query or would not answer. */
const TRANSIENT_MESSAGES = [
  /connection terminated/i,
  /connection (?:timeout|timed out)/i,
  /timeout exceeded when trying to connect/i,
  /client has encountered a connection error and is not queryable/i,
  /client was closed and is not queryable/i,
];

/**
 * True when `e` (or an error in its `cause` chain) is a transient database fault: a lost, refused or
 * timed-out connection, the server restarting, or a serialization failure or deadlock.
 */
export function isTransientDbError(e: unknown): boolean {
  let current: unknown = e;
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth++) {
    const err = current as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown };
    const code = typeof err.code === 'string' ? err.code : '';
    if (NETWORK_CODES.has(code) || TRANSIENT_SQLSTATES.has(code) || code.startsWith('08')) return true;
    if (err.name === 'ConnectionException' || err.name === 'DeadlockException') return true;
    const message = typeof err.message === 'string' ? err.message : '';
    if (TRANSIENT_MESSAGES.some((pattern) => pattern.test(message))) return true;
    current = err.cause;
  }
  return false;
}

export interface DbRetryOptions {
  /** What the work does, named in the error when it gives up (`"planner: applying job events"`). */
  what: string;
  policy?: Partial<RetryPolicy>;
  log?: Logger;
  signal?: AbortSignal;
}

/**
 * Runs `work` under the database retry policy. When the database stays unreachable past the deadline
 * the error is a DomainError UNAVAILABLE (retryable: a worker hands the job back, a gRPC caller may try
 * again) naming what failed and why; a non-transient error is thrown as it is.
 */
export async function withDbRetry<T>(work: (attempt: number) => Promise<T>, options: DbRetryOptions): Promise<T> {
  const policy = { ...DEFAULT_DB_RETRY, ...options.policy };
  try {
    return await retrying((attempt) => work(attempt), {
      what: options.what,
      policy,
      isTransient: isTransientDbError,
      onRetry: ({ error, attempt, delayMs }) =>
        options.log?.warn(
          { err: error, attempt, retryInMs: delayMs, what: options.what },
          'database unavailable; retrying',
        ),
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
    });
  } catch (e) {
    if (e instanceof RetriesExhausted) {
      throw new DomainError('UNAVAILABLE', `the database is unavailable: ${e.message}`, { cause: e.cause });
    }
    throw e;
  }
}
