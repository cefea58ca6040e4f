// Errors as data across the gRPC boundary: DomainError → status (server side) and back (client side).
import { randomUUID } from 'node:crypto';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import { DomainError, type ErrorCode, isDomainError } from '@stageline/errors';

/** Trailing metadata key carrying the request field at fault (proto snake_case path). */
export const FIELD_METADATA_KEY = 'stageline-field';

/**
 * gRPC's rich error model: a binary `google.rpc.Status` whose details name the field at fault in the
 * standard way, read by any language's client libraries (Python's `grpc_status`, Go's `status.Details`):
 * `google.rpc.BadRequest` for INVALID_ARGUMENT, `google.rpc.PreconditionFailure` (type `FIELD`) for
 * FAILED_PRECONDITION. `stageline-field` stays for clients that read plain trailers.
 */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

/**
 * The detail message for a field at fault, per status code: its type URL and how one violation is
 * written (field number → value): `BadRequest.FieldViolation { field = 1; description = 2 }`,
 * `PreconditionFailure.Violation { type = 1; subject = 2; description = 3 }`. Both messages hold their
 * violations in field 1.
 */
const FIELD_DETAILS = new Map<grpc.status, { typeUrl: string; field: number; description: number; type?: number }>([
  [grpc.status.INVALID_ARGUMENT, { typeUrl: 'type.googleapis.com/google.rpc.BadRequest', field: 1, description: 2 }],
  [
    grpc.status.FAILED_PRECONDITION,
    { typeUrl: 'type.googleapis.com/google.rpc.PreconditionFailure', type: 1, field: 2, description: 3 },
  ],
]);

/** A message of length-delimited fields (strings or nested messages), written in the order given. */
function message(fields: Array<[number, string | Uint8Array]>): Uint8Array {
  const writer = new BinaryWriter();
  for (const [no, value] of fields) {
    writer.tag(no, WireType.LengthDelimited);
    if (typeof value === 'string') writer.string(value);
    else writer.bytes(value);
  }
  return writer.finish();
}

/** google.rpc.Status { code = 1; message = 2; details = 3 (google.protobuf.Any { type_url = 1; value = 2 }) }. */
function statusDetails(code: grpc.status, text: string, field: string, description: string): Buffer | undefined {
  const detail = FIELD_DETAILS.get(code);
  if (detail === undefined) return undefined;
  const violation = message([
    ...(detail.type !== undefined ? [[detail.type, 'FIELD'] as [number, string]] : []),
    [detail.field, field],
    [detail.description, description],
  ]);
  const any = message([
    [1, detail.typeUrl],
    [2, message([[1, violation]])],
  ]);
  const status = new BinaryWriter().tag(1, WireType.Varint).int32(code).finish();
  return Buffer.concat([
    status,
    message([
      [2, text],
      [3, any],
    ]),
  ]);
}

/** Length-delimited fields of a message, by field number (the rest skipped). */
function fieldsOf(bytes: Uint8Array): Map<number, Uint8Array[]> {
  const out = new Map<number, Uint8Array[]>();
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [no, type] = reader.tag();
    if (type !== WireType.LengthDelimited) {
      reader.skip(type);
      continue;
    }
    out.set(no, [...(out.get(no) ?? []), reader.bytes()]);
  }
  return out;
}

/**
 * The fields a status names in its `google.rpc.Status` details (BadRequest field violations,
 * PreconditionFailure subjects), for clients and tests; empty when it has none or they do not parse.
 */
export function fieldViolationsOf(e: unknown): { field: string; description: string }[] {
  if (!isServiceError(e) || !(e.metadata instanceof grpc.Metadata)) return [];
  const raw = e.metadata.get(STATUS_DETAILS_KEY)[0];
  if (!(raw instanceof Buffer)) return [];
  const text = (b: Uint8Array | undefined) => (b === undefined ? '' : new TextDecoder().decode(b));
  try {
    return (fieldsOf(raw).get(3) ?? []).flatMap((anyBytes) => {
      const any = fieldsOf(anyBytes);
      const typeUrl = text(any.get(1)?.[0]);
      const detail = [...FIELD_DETAILS.values()].find((d) => d.typeUrl === typeUrl);
      if (detail === undefined) return [];
      return (fieldsOf(any.get(2)?.[0] ?? new Uint8Array()).get(1) ?? []).map((v) => {
        const f = fieldsOf(v);
        return { field: text(f.get(detail.field)?.[0]), description: text(f.get(detail.description)?.[0]) };
      });
    });
  } catch {
    return [];
  }
}

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
    case 'UNAUTHENTICATED':
      return grpc.status.UNAUTHENTICATED;
    case 'PERMISSION_DENIED':
      return grpc.status.PERMISSION_DENIED;
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
    const code = codeOf(e.code);
    if (e.field !== undefined) {
      metadata.set(FIELD_METADATA_KEY, e.field);
      const description = e.message.startsWith(`${e.field}: `) ? e.message.slice(e.field.length + 2) : e.message;
      const details = statusDetails(code, e.message, e.field, description);
      if (details !== undefined) metadata.set(STATUS_DETAILS_KEY, details);
    }
    return { code, details: e.message, metadata };
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
    case grpc.status.UNAUTHENTICATED:
      return new DomainError('UNAUTHENTICATED', `${what}: ${details}`, options);
    case grpc.status.PERMISSION_DENIED:
      return new DomainError('PERMISSION_DENIED', `${what}: ${details}`, options);
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
    case grpc.status.RESOURCE_EXHAUSTED:
    case grpc.status.ABORTED:
      return new DomainError('UNAVAILABLE', `${what}: ${details}`, { cause: e, retryable: true });
    default:
      return new DomainError('INTERNAL', `${what} failed: ${grpc.status[e.code] ?? e.code} ${details}`, { cause: e });
  }
}
