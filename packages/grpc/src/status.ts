// Errors as data across the gRPC boundary: DomainError → status (server side) and back (client side).
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { DomainError, type ErrorCode, isDomainError } from '@stageline/errors';

/** Trailing metadata key carrying the request field at fault (proto snake_case path). */
export const FIELD_METADATA_KEY = 'stageline-field';

export interface GrpcStatus {
  code: grpc.status;
  details: string;
  metadata: grpc.Metadata;
  /** Set for INTERNAL: the id printed in the generic message and logged with the real error. */
  errorId?: string;
}

function codeOf(code: ErrorCode): grpc.status {
  // Exhaustive: adding an ErrorCode without mapping it here fails the type check.
  switch (code) {
    case 'INVALID_ARGUMENT':
      return grpc.status.INVALID_ARGUMENT;
    case 'NOT_FOUND':
      return grpc.status.NOT_FOUND;
    case 'ALREADY_EXISTS':
      return grpc.status.ALREADY_EXISTS;
    case 'FAILED_PRECONDITION':
      return grpc.status.FAILED_PRECONDITION;
    case 'UNAVAILABLE':
      return grpc.status.UNAVAILABLE;
    case 'INTERNAL':
      return grpc.status.INTERNAL;
    default: {
      const unreachable: never = code;
      throw new Error(`unmapped error code ${String(unreachable)}`);
    }
  }
}

/**
 * The one mapping from anything thrown by a handler to the status the client sees.
 * DomainError messages are written for clients (and already start with `field: `);
 * anything else, and INTERNAL DomainErrors, become a generic message with an id
 * so that the real error (logged by the caller) never leaks.
 */
export function toGrpcStatus(e: unknown): GrpcStatus {
  const metadata = new grpc.Metadata();
  if (isDomainError(e) && e.code !== 'INTERNAL') {
    if (e.field !== undefined) metadata.set(FIELD_METADATA_KEY, e.field);
    return { code: codeOf(e.code), details: e.message, metadata };
  }
  const errorId = randomUUID();
  return { code: grpc.status.INTERNAL, details: `internal error (id ${errorId})`, metadata, errorId };
}

export const isServiceError = (e: unknown): e is grpc.ServiceError =>
  e instanceof Error && typeof (e as Partial<grpc.ServiceError>).code === 'number' && 'metadata' in e;

/** The request field a server blamed (`stageline-field` trailer), if any. */
export function fieldOf(e: unknown): string | undefined {
  if (!isServiceError(e) || !(e.metadata instanceof grpc.Metadata)) return undefined;
  const value = e.metadata.get(FIELD_METADATA_KEY)[0];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Turns an error from a call to another Stageline service back into a DomainError, so a handler
 * can rethrow a downstream refusal (e.g. the planner's FAILED_PRECONDITION) with its code and field.
 * Transport failures (UNAVAILABLE, DEADLINE_EXCEEDED, …) become retryable UNAVAILABLE; anything
 * else becomes INTERNAL (which toGrpcStatus never shows to clients).
 */
export function domainErrorFromGrpc(e: unknown, what = 'upstream call'): DomainError {
  if (isDomainError(e)) return e;
  if (!isServiceError(e)) return new DomainError('INTERNAL', `${what} failed`, { cause: e });
  const field = fieldOf(e);
  // The server prefixed its message with `field: `; DomainError adds it again, so strip it once.
  const details =
    field !== undefined && e.details.startsWith(`${field}: `) ? e.details.slice(field.length + 2) : e.details;
  const options = field === undefined ? { cause: e } : { cause: e, field };
  switch (e.code) {
    case grpc.status.INVALID_ARGUMENT:
      return new DomainError('INVALID_ARGUMENT', details, options);
    case grpc.status.NOT_FOUND:
      return new DomainError('NOT_FOUND', details, options);
    case grpc.status.ALREADY_EXISTS:
      return new DomainError('ALREADY_EXISTS', details, options);
    case grpc.status.FAILED_PRECONDITION:
      return new DomainError('FAILED_PRECONDITION', details, options);
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
    case grpc.status.RESOURCE_EXHAUSTED:
    case grpc.status.ABORTED:
      return new DomainError('UNAVAILABLE', `${what}: ${details}`, { cause: e, retryable: true });
    default:
      return new DomainError('INTERNAL', `${what} failed: ${grpc.status[e.code] ?? e.code} ${details}`, { cause: e });
  }
}
