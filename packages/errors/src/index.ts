// Errors as data: every layer throws DomainError; one function per transport maps it
// (gRPC status in @stageline/grpc, ack/nak/term in @stageline/bus).

export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  /** No credential, or one that is unknown, revoked or expired. */
  | 'UNAUTHENTICATED'
  /** A known caller without the role, project or identity the operation needs. */
  | 'PERMISSION_DENIED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export interface DomainErrorOptions {
  /** The request field at fault, in the proto's snake_case path, e.g. `service.application.git_url`. */
  field?: string;
  /** Worth trying again later (a dependency was down), as opposed to a bad request. */
  retryable?: boolean;
  cause?: unknown;
}

export class DomainError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: DomainErrorOptions = {}) {
    super(options.field !== undefined ? `${options.field}: ${message}` : message, { cause: options.cause });
    this.name = 'DomainError';
    this.code = code;
    this.field = options.field;
    this.retryable = options.retryable ?? code === 'UNAVAILABLE';
  }
}

export const invalidArgument = (field: string, message: string): DomainError =>
  new DomainError('INVALID_ARGUMENT', message, { field });
export const notFound = (what: string, id: string, field?: string): DomainError =>
  new DomainError('NOT_FOUND', `${what} ${JSON.stringify(id)} not found`, field === undefined ? {} : { field });
export const alreadyExists = (field: string, message: string): DomainError =>
  new DomainError('ALREADY_EXISTS', message, { field });
export const failedPrecondition = (message: string, field?: string): DomainError =>
  new DomainError('FAILED_PRECONDITION', message, field === undefined ? {} : { field });

export const isDomainError = (e: unknown): e is DomainError => e instanceof DomainError;

export { backoffMs, RetriesExhausted, type RetryOptions, type RetryPolicy, retrying } from './retry.ts';
