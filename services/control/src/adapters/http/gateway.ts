// The console's API: a JSON gateway over control's own gRPC server. Every call goes to the public
// gRPC port as a client carrying the signed-in user's token, so it meets exactly the checks a CLI
// call meets (authorize: token, METHOD_ROLES, project scope; then the same handlers and error
// mapping) — the gateway holds no credential and no privilege of its own. Messages are converted
// with the ts-proto codecs of the protos (proto JSON both ways); the routes come from the service
// definitions, so a method added to a proto is served without a line here.
import * as grpc from '@grpc/grpc-js';
import { clientChannel, fieldOf, isServiceError, serviceNameOf } from '@stageline/grpc';
import { control } from '@stageline/proto';

interface Codec {
  fromJSON(object: unknown): unknown;
  toJSON(message: unknown): unknown;
}

export interface GatewayMethod {
  /** `/stageline.control.v1.PipelineService/MoveService` */
  path: string;
  serverStreaming: boolean;
  request: Codec;
  response: Codec;
  serialize(value: unknown): Buffer;
  deserialize(bytes: Buffer): unknown;
}

/** The public services, as the gRPC server serves them (SnapshotService is the planner's: not here). */
const PUBLIC_SERVICES: grpc.ServiceDefinition[] = [
  control.EnvironmentServiceService,
  control.PipelineServiceService,
  control.DeploymentServiceService,
  control.AccessServiceService,
];

/** Every public method by path. buf's STANDARD lint makes each RPC's messages `<Rpc>Request`/`<Rpc>Response`. */
export function gatewayMethods(): Map<string, GatewayMethod> {
  const codecs = control as unknown as Record<string, Codec | undefined>;
  const methods = new Map<string, GatewayMethod>();
  for (const definition of PUBLIC_SERVICES) {
    serviceNameOf(definition); // throws on an empty definition
    for (const m of Object.values(definition)) {
      const rpc = m.path.slice(m.path.lastIndexOf('/') + 1);
      const request = codecs[`${rpc}Request`];
      const response = codecs[`${rpc}Response`];
      if (request === undefined || response === undefined)
        throw new Error(`${m.path}: no ${rpc}Request/Response codec`);
      if (m.requestStream) continue; // no public method streams requests; a browser could not either
      methods.set(m.path, {
        path: m.path,
        serverStreaming: m.responseStream,
        request,
        response,
        serialize: m.requestSerialize as (value: unknown) => Buffer,
        deserialize: m.responseDeserialize as (bytes: Buffer) => unknown,
      });
    }
  }
  return methods;
}

/** A refusal as the console shows it: the gRPC code's name, the server's message, the field at fault. */
export interface ApiError {
  code: string;
  message: string;
  field?: string;
}

const HTTP_STATUS: Partial<Record<string, number>> = {
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 400,
  OUT_OF_RANGE: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  ABORTED: 409,
  RESOURCE_EXHAUSTED: 429,
  CANCELLED: 499,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
};

export function httpStatusOf(code: string): number {
  return HTTP_STATUS[code] ?? 500;
}

export function apiErrorOf(e: unknown): ApiError {
  if (!isServiceError(e)) return { code: 'INTERNAL', message: 'the console could not complete the call' };
  const field = fieldOf(e);
  return {
    code: grpc.status[e.code] ?? 'UNKNOWN',
    message: e.details,
    ...(field === undefined ? {} : { field }),
  };
}

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The first enum value ts-proto could not place (`UNRECOGNIZED`), as a snake_case field path and what was sent. */
function unrecognizedPath(decoded: unknown, sent: unknown, path = ''): { field: string; value: unknown } | undefined {
  if (decoded === 'UNRECOGNIZED') return { field: path, value: sent };
  if (typeof decoded !== 'object' || decoded === null) return undefined;
  for (const [key, value] of Object.entries(decoded)) {
    const original = (sent as Record<string, unknown> | undefined)?.[key];
    const field = Array.isArray(decoded) ? `${path}[${key}]` : path === '' ? snake(key) : `${path}.${snake(key)}`;
    const found = unrecognizedPath(value, original, field);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Thrown for a request body that is not the method's message. */
export class BadRequest extends Error {
  readonly field: string | undefined;
  constructor(message: string, field?: string) {
    super(field === undefined ? message : `${field}: ${message}`);
    this.field = field;
  }
}

/** Calls control's gRPC server for the browser, as the session's token. */
export class Gateway {
  private readonly client: grpc.Client;
  readonly methods = gatewayMethods();

  constructor(grpcAddress: string, ca: string) {
    const channel = clientChannel(grpcAddress, { ca });
    this.client = new grpc.Client(grpcAddress, channel.credentials, channel.options);
  }

  private metadata(token: string): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    return metadata;
  }

  private decode(method: GatewayMethod, body: unknown): unknown {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new BadRequest(`the body must be a JSON object: the fields of ${method.path.split('/')[2]}Request`);
    }
    let request: unknown;
    try {
      request = method.request.fromJSON(body);
    } catch (e) {
      throw new BadRequest(e instanceof Error ? e.message : String(e));
    }
    // ts-proto reads an enum name it does not know as UNRECOGNIZED: refuse it, naming the field.
    const unknown = unrecognizedPath(method.request.toJSON(request), body);
    if (unknown !== undefined) {
      throw new BadRequest(`${JSON.stringify(unknown.value)} is not one of the enum's values`, unknown.field);
    }
    return request;
  }

  /** One unary call; resolves with the response as proto JSON. */
  unary(method: GatewayMethod, token: string, body: unknown): Promise<unknown> {
    const request = this.decode(method, body);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        method.path,
        method.serialize,
        method.deserialize,
        request,
        this.metadata(token),
        { deadline: Date.now() + 60_000 },
        (err, response) => (err ? reject(err) : resolve(method.response.toJSON(response))),
      );
    });
  }

  /** A server stream: each message as proto JSON to `onMessage`; `cancel` ends it. */
  stream(
    method: GatewayMethod,
    token: string,
    body: unknown,
    handlers: { onMessage(json: unknown): void; onEnd(error?: unknown): void },
  ): { cancel(): void } {
    const request = this.decode(method, body);
    const call = this.client.makeServerStreamRequest(
      method.path,
      method.serialize,
      method.deserialize,
      request,
      this.metadata(token),
      {},
    );
    let ended = false;
    const end = (error?: unknown) => {
      if (ended) return;
      ended = true;
      handlers.onEnd(error);
    };
    call.on('data', (m: unknown) => handlers.onMessage(method.response.toJSON(m)));
    call.on('error', (e: unknown) => end(isServiceError(e) && e.code === grpc.status.CANCELLED ? undefined : e));
    call.on('end', () => end());
    return {
      cancel() {
        ended = true;
        call.cancel();
      },
    };
  }

  close(): void {
    this.client.close();
  }
}
