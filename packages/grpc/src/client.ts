// Client-side helpers: promises over ts-proto's callback clients, and health checks.
import * as grpc from '@grpc/grpc-js';
import { RetriesExhausted, type RetryPolicy, retrying } from '@stageline/errors';
import { traceHeaders } from '@stageline/telemetry';
import { service as healthServiceDefinition } from 'grpc-health-check';
import { type ClientSecurity, connect } from './security.ts';

export interface CallOptions {
  /** Per-call deadline, retries included; default 30 s so that a wedged peer never hangs a caller forever. */
  deadlineMs?: number;
  metadata?: grpc.Metadata;
  /**
   * The gRPC retry policy between services (`GRPC_RETRY`): a status in `RETRYABLE_CODES` is tried again
   * with backoff and jitter for `withinMs` (default: until the deadline). Off by default: a person at a
   * terminal is better told at once that a server cannot be reached.
   */
  retry?: boolean | (Partial<Pick<RetryPolicy, 'baseMs' | 'maxMs'>> & { withinMs?: number });
}

/**
 * Statuses a call is tried again on: UNAVAILABLE (the server is down, restarting or unreachable, or one
 * of its own dependencies is — Stageline's servers say so with UNAVAILABLE). Every other status is an
 * answer. Stageline's RPCs that change something are idempotent (requests carry their id), so a retry
 * of a call whose answer was lost changes nothing.
 */
export const RETRYABLE_CODES: ReadonlySet<grpc.status> = new Set([grpc.status.UNAVAILABLE]);

/** Backoff of the gRPC retry policy; the deadline is each call's own. */
export const GRPC_RETRY: Pick<RetryPolicy, 'baseMs' | 'maxMs'> = { baseMs: 100, maxMs: 2_000 };

/** True for a ServiceError whose status is in RETRYABLE_CODES. */
export function isRetryableGrpcError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  const details = (e as { details?: unknown } | null)?.details;
  if (typeof code !== 'number' || !RETRYABLE_CODES.has(code) || typeof details !== 'string') return false;
  // A certificate the peer will not take is UNAVAILABLE too, but no retry mends it.
  return !/certificate|self[- ]signed|handshake|wrong version number|alert/i.test(details);
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

/** Names of the unary methods of a ts-proto client (an overloaded method matches on its last, fullest overload). */
export type UnaryMethodName<C> = {
  // biome-ignore lint/suspicious/noExplicitAny: matching any request/response type
  [K in keyof C]: C[K] extends UnaryMethod<any, any> ? K : never;
}[keyof C];
export type RequestOf<C, M extends keyof C> = C[M] extends UnaryMethod<infer Req, unknown> ? Req : never;
// biome-ignore lint/suspicious/noExplicitAny: matching any request type
export type ResponseOf<C, M extends keyof C> = C[M] extends UnaryMethod<any, infer Res> ? Res : never;

const DEFAULT_DEADLINE_MS = 30_000;

/**
 * `await callUnary(client, 'submit', request)`: rejects with the grpc.ServiceError
 * (read the field at fault with `fieldOf`, or rethrow it as a DomainError with `domainErrorFromGrpc`).
 */
export async function callUnary<C extends grpc.Client, M extends UnaryMethodName<C>>(
  client: C,
  method: M,
  request: RequestOf<C, M>,
  options: CallOptions = {},
): Promise<ResponseOf<C, M>> {
  const fn = client[method] as unknown as UnaryMethod<RequestOf<C, M>, ResponseOf<C, M>>;
  const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
  const deadline = Date.now() + deadlineMs;
  // The caller's span goes along (W3C trace context): the server's span becomes its child.
  const metadata = options.metadata?.clone() ?? new grpc.Metadata();
  for (const [key, value] of Object.entries(traceHeaders())) metadata.set(key, value);
  const once = (): Promise<ResponseOf<C, M>> =>
    new Promise((resolve, reject) => {
      fn.call(client, request, metadata, { deadline }, (error, response) =>
        error ? reject(error) : resolve(response),
      );
    });
  if (options.retry === undefined || options.retry === false) return once();
  const { withinMs, ...backoff } = options.retry === true ? {} : options.retry;
  try {
    return await retrying(once, {
      what: String(method),
      policy: { ...GRPC_RETRY, ...backoff, deadlineMs: Math.min(withinMs ?? deadlineMs, deadlineMs) },
      isTransient: isRetryableGrpcError,
    });
  } catch (e) {
    // The caller sees the last status as it was (UNAVAILABLE and its details): retries are invisible.
    throw e instanceof RetriesExhausted ? e.cause : e;
  }
}

export type HealthStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface HealthClient extends grpc.Client {
  Check: UnaryMethod<{ service: string }, { status: HealthStatus }>;
}
const HealthClient = grpc.makeGenericClientConstructor(healthServiceDefinition, 'grpc.health.v1.Health') as unknown as {
  new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions): HealthClient;
};

/** One Health/Check; rejects with the ServiceError (NOT_FOUND for an unknown service, UNAVAILABLE when down). */
export async function checkHealth(
  address: string,
  options: { security: ClientSecurity; service?: string; deadlineMs?: number },
): Promise<HealthStatus> {
  const client = connect(HealthClient, address, options.security);
  try {
    const response = await callUnary(
      client,
      'Check',
      { service: options.service ?? '' },
      { deadlineMs: options.deadlineMs ?? 2000 },
    );
    return response.status;
  } finally {
    client.close();
  }
}

export interface WaitForServingOptions {
  /** TLS to the server (health takes no token, but only TLS). */
  security: ClientSecurity;
  timeoutMs: number;
  /** A full service name; default '' (the server as a whole). */
  service?: string;
  /** Pause between checks; default 100 ms. */
  intervalMs?: number;
}

/** Polls Health/Check until SERVING; rejects after timeoutMs with the last status or error seen. */
export async function waitForServing(address: string, options: WaitForServingOptions): Promise<void> {
  const service = options.service ?? '';
  const deadline = Date.now() + options.timeoutMs;
  const client = connect(HealthClient, address, options.security);
  let last = 'no answer yet';
  try {
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      try {
        const { status } = await callUnary(client, 'Check', { service }, { deadlineMs: Math.min(remaining, 1000) });
        if (status === 'SERVING') return;
        last = status;
      } catch (e) {
        last = e instanceof Error ? e.message : String(e);
      }
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 100));
    }
  } finally {
    client.close();
  }
  throw new Error(
    `${address}${service === '' ? '' : ` (${service})`} not SERVING after ${options.timeoutMs} ms: last ${last}`,
  );
}
