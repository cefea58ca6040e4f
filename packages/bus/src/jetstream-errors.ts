// JetStream failures as DomainErrors: the server refusing a request is a precondition problem
// (wrong config, missing stream); a message the client refuses to send (over max_payload, a bad subject)
// is a bad argument; anything else (timeouts, disconnects, no stream answering) is worth retrying.
import { JetStreamApiError } from '@nats-io/jetstream';
import { InvalidArgumentError, InvalidSubjectError, PermissionViolationError } from '@nats-io/transport-node';
import { DomainError } from '@stageline/errors';

/** The JetStream API error code (`err_code`), if `e` is an API error. */
export function jetStreamErrorCode(e: unknown): number | undefined {
  return e instanceof JetStreamApiError ? e.code : undefined;
}

/**
 * JetStream API errors that pass: insufficient resources (10023, a full disk or account), no quorum or
 * leader (10008, 10003 while a cluster elects), temporarily unavailable (10012). Retried, never set aside.
 */
const TRANSIENT_API_CODES = new Set([10003, 10008, 10012, 10023]);

export function toDomainError(e: unknown, what: string): DomainError {
  if (e instanceof DomainError) return e;
  const message = `${what} failed: ${e instanceof Error ? e.message : String(e)}`;
  // The bus user may not (an authenticated bus): retrying changes nothing.
  if (e instanceof PermissionViolationError || (e instanceof Error && e.cause instanceof PermissionViolationError))
    return new DomainError('PERMISSION_DENIED', message, { cause: e });
  // The client refuses it before sending (e.g. "max_payload size exceeded"): the same message fails again.
  if (e instanceof InvalidArgumentError || e instanceof InvalidSubjectError)
    return new DomainError('INVALID_ARGUMENT', message, { cause: e });
  if (e instanceof JetStreamApiError && !TRANSIENT_API_CODES.has(e.code))
    return new DomainError('FAILED_PRECONDITION', message, { cause: e });
  return new DomainError('UNAVAILABLE', message, { cause: e, retryable: true });
}
