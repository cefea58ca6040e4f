// Async handlers for grpc-js's callback API: a thrown error always becomes a mapped status, never a crash.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '@stageline/log';
import { type GrpcStatus, toGrpcStatus } from './status.ts';

function report(log: Logger, method: string, e: unknown): GrpcStatus {
  const status = toGrpcStatus(e);
  const fields = { method, code: grpc.status[status.code], details: status.details };
  switch (status.code) {
    case grpc.status.INTERNAL:
      // The only place the real error is recorded: the client got a generic message with this id.
      log.error({ ...fields, errorId: status.errorId, err: e }, 'grpc call failed');
      break;
    case grpc.status.UNAVAILABLE:
      log.warn({ ...fields, err: e }, 'grpc call failed: dependency unavailable');
      break;
    case grpc.status.FAILED_PRECONDITION:
      log.info(fields, 'grpc call refused');
      break;
    default:
      // Bad requests are the client's business; keep them out of the default log level.
      log.debug(fields, 'grpc call rejected');
  }
  return status;
}

export function unary<Req, Res>(
  log: Logger,
  handler: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    // Promise.resolve().then() also catches a handler that throws synchronously.
    Promise.resolve()
      .then(() => handler(call.request, call))
      .then(
        (response) => callback(null, response),
        (e: unknown) => {
          const { code, details, metadata } = report(log, call.getPath(), e);
          callback({ code, details, metadata });
        },
      );
  };
}

/** The handler writes messages with `call.write`; the stream ends when its promise settles. */
export function serverStream<Req, Res>(
  log: Logger,
  handler: (request: Req, call: grpc.ServerWritableStream<Req, Res>) => Promise<void>,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    Promise.resolve()
      .then(() => handler(call.request, call))
      .then(
        () => {
          if (!call.writableEnded) call.end();
        },
        (e: unknown) => {
          const { code, details, metadata } = report(log, call.getPath(), e);
          // grpc-js turns an 'error' event on a server stream into the call's final status.
          if (!call.writableEnded) call.emit('error', { code, details, metadata });
        },
      );
  };
}

/**
 * An implementation of every method of `definition` answering UNIMPLEMENTED, for services whose
 * contract exists before their code. Spread real handlers over it as they land:
 * `{ ...notImplemented<control.DeploymentServiceServer>(control.DeploymentServiceService), getDeployment: unary(…) }`.
 * (`S` is the ts-proto `…Server` type: every one of its methods is present, with a handler of the right shape.)
 */
export function notImplemented<S extends grpc.UntypedServiceImplementation = grpc.UntypedServiceImplementation>(
  definition: grpc.ServiceDefinition,
): S {
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const status = { code: grpc.status.UNIMPLEMENTED, details: `${method.path} is not implemented yet` };
    if (method.responseStream) {
      implementation[name] = (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', status);
    } else {
      implementation[name] = (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(status);
    }
  }
  return implementation as S;
}
