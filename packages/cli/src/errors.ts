// Exit codes scripts can rely on, and the errors that carry them.

export const EXIT = {
  OK: 0,
  /** A watched run ended FAILED or CANCELED; `diff` found changes. */
  RUN_FAILED: 1,
  /** Bad command line, config or environment file. */
  USAGE: 2,
  /** The server refused the request or could not be reached. */
  SERVER: 3,
  /** Ctrl-C while watching (the run goes on). */
  INTERRUPTED: 130,
} as const;

export class UsageError extends Error {
  override name = 'UsageError';
}

/** Ends the command with a code, after its output was written (e.g. a failed run). */
export class ExitCode extends Error {
  readonly code: number;
  constructor(code: number, message = '') {
    super(message);
    this.name = 'ExitCode';
    this.code = code;
  }
}
