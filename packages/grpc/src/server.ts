// One way to run a gRPC server: the given services plus grpc.health.v1.Health and server reflection.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import type { Logger } from '@stageline/log';
import { descriptorSetPath } from '@stageline/proto';
import {
  contextFromHeaders,
  inSpanContext,
  metrics,
  SpanKind,
  secondsSince,
  spanError,
  startSpan,
} from '@stageline/telemetry';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import {
  type Access,
  authorize,
  rememberPrincipal,
  serverCredentials,
  type TlsFiles,
  type TokenVerifier,
} from './security.ts';
import { toGrpcStatus } from './status.ts';

export interface GrpcServiceRegistration {
  /** A grpc-js service definition, e.g. ts-proto's `planner.PlannerServiceService`. */
  // biome-ignore lint/suspicious/noExplicitAny: grpc-js's own type for "any service"
  definition: grpc.ServiceDefinition<any>;
  implementation: grpc.UntypedServiceImplementation;
  /** Who may call it: nothing is served without saying (health and reflection stay open). */
  access: Access;
}

export interface StartGrpcServerOptions {
  /** host:port to listen on; port 0 picks a free port (read it back from `GrpcServer.address`). */
  address: string;
  services: GrpcServiceRegistration[];
  /** This server's certificate, key and the CA client certificates must chain to. */
  tls: TlsFiles;
  /** How bearer tokens are checked; without it every token is refused. */
  verifyToken?: TokenVerifier;
  log: Logger;
  /** How long `shutdown()` lets in-flight calls finish before cutting them; default 5000 ms. */
  shutdownGraceMs?: number;
}

export interface GrpcServer {
  /** The address actually bound, host:port (the real port when 0 was asked for). */
  readonly address: string;
  readonly port: number;
  /** The full names of the registered services, e.g. `stageline.planner.v1.PlannerService`. */
  readonly serviceNames: readonly string[];
  /** Health status of '' and of every registered service: SERVING or NOT_SERVING. */
  setServing(serving: boolean): void;
  /** NOT_SERVING, then a graceful shutdown bounded by the grace period, then a forced one. Idempotent. */
  shutdown(): Promise<void>;
}

const HEALTH_SERVICE = 'grpc.health.v1.Health';
const REFLECTION_SERVICES = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

/** `/stageline.planner.v1.PlannerService/Submit` → `stageline.planner.v1.PlannerService`. */
export function serviceNameOf(definition: grpc.ServiceDefinition): string {
  const first = Object.values(definition)[0];
  const match = first === undefined ? null : /^\/([^/]+)\/[^/]+$/.exec(first.path);
  if (match?.[1] === undefined) throw new Error('service definition has no methods: cannot tell its name');
  return match[1];
}

// Reflection describes our protos and also the health and reflection protos, so grpcurl-style
// clients can call every service the server answers; only the services actually served are listed.
function reflectionPackage(): protoLoader.PackageDefinition {
  const ours = protoLoader.loadFileDescriptorSetFromBuffer(readFileSync(descriptorSetPath));
  const health = protoLoader.loadSync(healthProtoPath);
  const require = createRequire(import.meta.url);
  const reflectionProtoDir = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto');
  const reflection = protoLoader.loadSync(
    ['grpc/reflection/v1/reflection.proto', 'grpc/reflection/v1alpha/reflection.proto'],
    { includeDirs: [reflectionProtoDir] },
  );
  return { ...reflection, ...health, ...ours };
}

function bind(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (error, port) =>
      error
        ? reject(new Error(`gRPC server cannot listen on ${address}: ${error.message}`, { cause: error }))
        : resolve(port),
    );
  });
}

function withPort(address: string, port: number): string {
  const colon = address.lastIndexOf(':');
  return `${colon < 0 ? address : address.slice(0, colon)}:${port}`;
}

/** Every method authorizes its caller before its handler runs, and remembers who it was (`principalOf`). */
function guarded(
  // biome-ignore lint/suspicious/noExplicitAny: grpc-js's own type for "any service"
  definition: grpc.ServiceDefinition<any>,
  implementation: grpc.UntypedServiceImplementation,
  access: Access,
  options: StartGrpcServerOptions,
): grpc.UntypedServiceImplementation {
  const service = serviceNameOf(definition);
  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const handler = implementation[name];
    if (handler === undefined) continue;
    const check = (call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>) =>
      authorize(
        call,
        { service, name, rpc: method.path.slice(method.path.lastIndexOf('/') + 1) },
        access,
        options.verifyToken,
      ).then((principal) => {
        rememberPrincipal(call, principal);
      });
    const refuse = (path: string, e: unknown) => {
      const status = toGrpcStatus(e);
      options.log.info({ method: path, code: grpc.status[status.code], details: status.details }, 'grpc call refused');
      return status;
    };
    if (method.requestStream) throw new Error(`${method.path}: client streaming is not supported`);
    // Every call counted by method and code, timed (a stream: until its end), and traced: a server
    // span, child of the caller's when its metadata carries W3C trace context, active in the handler.
    const rpcMethod = method.path.slice(method.path.lastIndexOf('/') + 1);
    const observe = (metadata: grpc.Metadata) => {
      const started = performance.now();
      const header = (key: string) => {
        const value = metadata.get(key)[0];
        return typeof value === 'string' ? value : undefined;
      };
      const span = startSpan(method.path.slice(1), {
        kind: SpanKind.SERVER,
        parent: contextFromHeaders(header),
        attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': rpcMethod },
      });
      let done = false;
      const record = (code: number) => {
        if (done) return;
        done = true;
        const name = grpc.status[code] ?? String(code);
        metrics.grpcCalls.inc({ method: method.path, code: name });
        metrics.grpcDuration.observe({ method: method.path }, secondsSince(started));
        span.setAttribute('rpc.grpc.status_code', code);
        if (code !== grpc.status.OK) spanError(span, name);
        span.end();
      };
      return { record, active: <T>(fn: () => T): T => inSpanContext(span, fn) };
    };
    if (method.responseStream) {
      const h = handler as grpc.handleServerStreamingCall<unknown, unknown>;
      out[name] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
        const { record, active } = observe(call.metadata);
        call.once('finish', () => record(grpc.status.OK));
        call.once('cancelled', () => record(grpc.status.CANCELLED));
        call.once('error', (e: { code?: number }) => record(e.code ?? grpc.status.UNKNOWN));
        void active(() =>
          check(call).then(
            () => h(call),
            (e: unknown) => {
              const { code, details, metadata } = refuse(call.getPath(), e);
              call.emit('error', { code, details, metadata });
            },
          ),
        );
      }) as grpc.handleServerStreamingCall<unknown, unknown>;
    } else {
      const h = handler as grpc.handleUnaryCall<unknown, unknown>;
      out[name] = ((call: grpc.ServerUnaryCall<unknown, unknown>, answer: grpc.sendUnaryData<unknown>) => {
        const { record, active } = observe(call.metadata);
        const callback: grpc.sendUnaryData<unknown> = (error, value, ...rest) => {
          record(error === null || error === undefined ? grpc.status.OK : (error.code ?? grpc.status.UNKNOWN));
          answer(error, value, ...rest);
        };
        void active(() =>
          check(call).then(
            () => h(call, callback),
            (e: unknown) => {
              const { code, details, metadata } = refuse(call.getPath(), e);
              callback({ code, details, metadata });
            },
          ),
        );
      }) as grpc.handleUnaryCall<unknown, unknown>;
    }
  }
  return out;
}

export async function startGrpcServer(options: StartGrpcServerOptions): Promise<GrpcServer> {
  const { log } = options;
  const graceMs = options.shutdownGraceMs ?? 5000;
  const server = new grpc.Server();

  const serviceNames = options.services.map(({ definition }) => serviceNameOf(definition));
  for (const { definition, implementation, access } of options.services) {
    server.addService(definition, guarded(definition, implementation, access, options));
  }

  // Every name starts NOT_SERVING so that a health check racing the bind never sees SERVING early.
  const health = new HealthImplementation(
    Object.fromEntries(['', ...serviceNames].map((name) => [name, 'NOT_SERVING' as const])),
  );
  health.addToServer(server);
  new ReflectionService(reflectionPackage(), {
    services: [...serviceNames, HEALTH_SERVICE, ...REFLECTION_SERVICES],
  }).addToServer(server);

  const port = await bind(server, options.address, serverCredentials(options.tls));
  const address = withPort(options.address, port);

  const setServing = (serving: boolean): void => {
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    for (const name of ['', ...serviceNames]) health.setStatus(name, status);
  };
  setServing(true);
  log.info({ address, services: serviceNames }, 'gRPC server listening');

  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    stopping ??= new Promise<void>((resolve) => {
      setServing(false);
      // Health Watch streams never end on their own, so a graceful shutdown needs a deadline.
      const timer = setTimeout(() => {
        log.warn({ address, graceMs }, 'gRPC calls still running after the grace period: forcing shutdown');
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown((error) => {
        clearTimeout(timer);
        if (error) {
          log.warn({ err: error }, 'graceful gRPC shutdown failed: forcing it');
          server.forceShutdown();
        }
        resolve();
      });
    }).then(() => log.info({ address }, 'gRPC server stopped'));
    return stopping;
  };

  return { address, port, serviceNames, setServing, shutdown };
}
