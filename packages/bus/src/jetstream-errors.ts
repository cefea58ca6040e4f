// JetStream failures as DomainErrors: the server refusing a request is a precondition problem
// (wrong config, missing stream); anything else (timeouts, disconnects) is worth retrying.
import { JetStreamApiError } from '@nats-io/jetstream';
import { PermissionViolationError } from '@nats-io/transport-node';
import { DomainError } from '@stageline/errors';

/** The JetStream API error code (`err_code`), if `e` is an API error. */
export function jetStreamErrorCode(e: unknown): number | undefined {
  return e instanceof JetStreamApiError ? e.code : undefined;
}

export function toDomainError(e: unknown, what: string): DomainError {
  if (e instanceof DomainError) return e;
  const message = `${what} failed: ${e instanceof Error ? e.message : String(e)}`;
  // The bus user may not (an authenticated bus): retrying changes nothing.
  if (e instanceof PermissionViolationError || (e instanceof Error && e.cause instanceof PermissionViolationError))
    return new DomainError('PERMISSION_DENIED', message, { cause: e });
  return e instanceof JetStreamApiError
    ? new DomainError('FAILED_PRECONDITION', message, { cause: e })
    : new DomainError('UNAVAILABLE', message, { cause: e, retryable: true });
}
