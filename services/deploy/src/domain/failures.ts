// How a rollout ends when it does not become ready. Messages are for humans and end up in step messages.

export type RolloutFailureReason = 'exited' | 'not-ready' | 'failed';

/** The release did not become ready: its container exited, its probe never passed, or the runtime refused it. */
export class RolloutError extends Error {
  override name = 'RolloutError';
  readonly reason: RolloutFailureReason;
  /** A job's container exit code, when it exited. */
  readonly exitCode: number | undefined;
  constructor(reason: RolloutFailureReason, message: string, options?: { cause?: unknown; exitCode?: number }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.reason = reason;
    this.exitCode = options?.exitCode;
  }
}

/** The rollout was canceled (the run was canceled or the worker is stopping) before it became ready. */
export class RolloutCanceled extends Error {
  override name = 'RolloutCanceled';
  constructor(message = 'canceled') {
    super(message);
  }
}

/** At most `maxLines` last non-empty lines of `text`, for "…: <last log lines>" messages. */
export function lastLines(text: string, maxLines: number): string[] {
  return text
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l !== '')
    .slice(-maxLines);
}
