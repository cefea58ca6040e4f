import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { DomainError, failedPrecondition, invalidArgument, notFound } from '@stageline/errors';
import { createLogger } from '@stageline/log';
import { control, planner } from '@stageline/proto';
import { testSecurity } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  callUnary,
  checkHealth,
  clientChannel,
  connect,
  domainErrorFromGrpc,
  FIELD_METADATA_KEY,
  fieldOf,
  fieldViolationsOf,
  type GrpcServer,
  isServiceError,
  notImplemented,
  type Principal,
  serverStream,
  startGrpcServer,
  toGrpcStatus,
  unary,
  waitForServing,
} from '../src/index.ts';

// Every server here is what production runs: TLS with a service certificate from the test CA.
// PlannerService takes the `control` identity (mutual TLS); DeploymentService takes a bearer token,
// which this stub maps to a viewer (the real verifier is control's token store).
const security = testSecurity();
const TEST_TOKEN = 'stl_grpc-test_token';
const verifyToken = async (token: string): Promise<Extract<Principal, { kind: 'token' }> | undefined> =>
  token === TEST_TOKEN
    ? { kind: 'token', tokenId: 'grpc-test', tokenName: 'grpc-test', role: 'ROLE_VIEWER', projects: [] }
    : undefined;
const tls = security.files('control');
const health = { ca: security.ca };

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line));
      callback();
    },
  });
  return { log: createLogger({ service: 'grpc-test', level: 'debug', destination }), lines };
}

async function rejection(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (e) {
    if (isServiceError(e)) return e;
    throw e;
  }
  throw new Error('expected the call to fail');
}

describe('toGrpcStatus', () => {
  it('maps every DomainError code and keeps the field in details and trailing metadata', () => {
    const cases = [
      ['INVALID_ARGUMENT', grpc.status.INVALID_ARGUMENT],
      ['NOT_FOUND', grpc.status.NOT_FOUND],
      ['ALREADY_EXISTS', grpc.status.ALREADY_EXISTS],
      ['FAILED_PRECONDITION', grpc.status.FAILED_PRECONDITION],
      ['UNAVAILABLE', grpc.status.UNAVAILABLE],
    ] as const;
    for (const [code, expected] of cases) {
      const status = toGrpcStatus(new DomainError(code, 'bad value', { field: 'service.name' }));
      expect(status.code).toBe(expected);
      expect(status.details).toBe('service.name: bad value');
      expect(status.metadata.get(FIELD_METADATA_KEY)).toEqual(['service.name']);
    }
  });

  it('never leaks the message of an unknown or INTERNAL error', () => {
    for (const e of [new Error('password=hunter2'), new DomainError('INTERNAL', 'password=hunter2'), 'hunter2']) {
      const status = toGrpcStatus(e);
      expect(status.code).toBe(grpc.status.INTERNAL);
      expect(status.details).not.toContain('hunter2');
      expect(status.details).toContain(status.errorId);
    }
  });
});

describe('gRPC server', () => {
  const { log, lines } = captureLogger();
  let server: GrpcServer;
  let plannerClient: planner.PlannerServiceClient;
  let deploymentClient: control.DeploymentServiceClient;

  beforeAll(async () => {
    server = await startGrpcServer({
      address: '127.0.0.1:0',
      log,
      tls,
      verifyToken,
      services: [
        {
          definition: planner.PlannerServiceService,
          implementation: {
            submit: unary(log, async (request: planner.SubmitRequest) => {
              if (request.request?.environmentId !== 'env-1') {
                throw invalidArgument('request.environment_id', 'must name an existing environment');
              }
              return planner.SubmitResponse.fromPartial({ deployment: { id: 'dep-1', environmentId: 'env-1' } });
            }),
            plan: unary(log, async () => {
              throw notFound('environment', 'env-404');
            }),
            getDeployment: unary(log, async () => {
              throw failedPrecondition('environment is being deleted', 'environment_id');
            }),
            listDeployments: unary(log, async () => {
              throw new Error('connection to postgres://admin:hunter2@db failed');
            }),
          } satisfies planner.PlannerServiceServer,
          access: { services: ['control'] },
        },
        {
          definition: control.DeploymentServiceService,
          implementation: {
            ...notImplemented(control.DeploymentServiceService),
            watchDeployment: serverStream(
              log,
              async (request: control.WatchDeploymentRequest, call: grpc.ServerWritableStream<unknown, unknown>) => {
                call.write(control.WatchDeploymentResponse.fromPartial({ deployment: { id: request.deploymentId } }));
                call.write(control.WatchDeploymentResponse.fromPartial({ deployment: { id: request.deploymentId } }));
                if (request.deploymentId === 'gone') throw invalidArgument('deployment_id', 'was deleted meanwhile');
              },
            ),
          },
          access: { roles: { watchDeployment: 'ROLE_VIEWER', getDeployment: 'ROLE_VIEWER' } },
        },
      ],
    });
    plannerClient = connect(planner.PlannerServiceClient, server.address, security.service('control'));
    deploymentClient = connect(control.DeploymentServiceClient, server.address, security.user(TEST_TOKEN));
  });

  afterAll(async () => {
    plannerClient?.close();
    deploymentClient?.close();
    await server?.shutdown();
  });

  it('listens on the real port when port 0 was asked for', () => {
    expect(server.port).toBeGreaterThan(0);
    expect(server.address).toBe(`127.0.0.1:${server.port}`);
    expect(server.serviceNames).toEqual([
      'stageline.planner.v1.PlannerService',
      'stageline.control.v1.DeploymentService',
    ]);
  });

  it('answers a successful unary call through callUnary', async () => {
    const response = await callUnary(
      plannerClient,
      'submit',
      planner.SubmitRequest.fromPartial({ request: { environmentId: 'env-1' } }),
    );
    expect(response.deployment?.id).toBe('dep-1');
  });

  it('maps a thrown INVALID_ARGUMENT to its status, with the field in details and metadata', async () => {
    const err = await rejection(
      callUnary(plannerClient, 'submit', planner.SubmitRequest.fromPartial({ request: { environmentId: 'nope' } })),
    );
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe('request.environment_id: must name an existing environment');
    expect(fieldOf(err)).toBe('request.environment_id');
    // The same field in gRPC's standard rich error model (google.rpc.Status with a BadRequest).
    expect(fieldViolationsOf(err)).toEqual([
      { field: 'request.environment_id', description: 'must name an existing environment' },
    ]);
    expect(lines.some((l) => l.level === 'debug' && l.code === 'INVALID_ARGUMENT')).toBe(true);

    // A caller can rethrow it as a DomainError without doubling the field prefix.
    const domain = domainErrorFromGrpc(err);
    expect(domain.code).toBe('INVALID_ARGUMENT');
    expect(domain.field).toBe('request.environment_id');
    expect(domain.message).toBe('request.environment_id: must name an existing environment');
  });

  it('maps NOT_FOUND and FAILED_PRECONDITION', async () => {
    const missing = await rejection(callUnary(plannerClient, 'plan', planner.PlanRequest.fromPartial({})));
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.details).toBe('environment "env-404" not found');
    expect(fieldOf(missing)).toBeUndefined();

    const refused = await rejection(
      callUnary(plannerClient, 'getDeployment', planner.GetDeploymentRequest.fromPartial({})),
    );
    expect(refused.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(fieldOf(refused)).toBe('environment_id');
    expect(fieldViolationsOf(refused).map((v) => v.field)).toEqual(['environment_id']);
    expect(fieldViolationsOf(missing)).toEqual([]);
    expect(lines.some((l) => l.level === 'info' && l.code === 'FAILED_PRECONDITION')).toBe(true);
  });

  it('turns an unknown error into INTERNAL with a generic message and logs the real one', async () => {
    const err = await rejection(
      callUnary(plannerClient, 'listDeployments', planner.ListDeploymentsRequest.fromPartial({})),
    );
    expect(err.code).toBe(grpc.status.INTERNAL);
    expect(err.details).not.toContain('hunter2');
    const logged = lines.find((l) => l.level === 'error' && l.code === 'INTERNAL');
    expect(logged?.method).toBe('/stageline.planner.v1.PlannerService/ListDeployments');
    expect(err.details).toContain(String(logged?.errorId));
    expect(JSON.stringify(logged?.err)).toContain('connection to postgres');
    expect(domainErrorFromGrpc(err).code).toBe('INTERNAL');
  });

  it('streams messages, then ends normally or with the mapped error', async () => {
    const collect = (deploymentId: string) =>
      new Promise<{ ids: string[]; error: grpc.ServiceError | undefined }>((resolve) => {
        const ids: string[] = [];
        const stream = deploymentClient.watchDeployment(control.WatchDeploymentRequest.fromPartial({ deploymentId }));
        stream.on('data', (m: control.WatchDeploymentResponse) => ids.push(m.deployment?.id ?? ''));
        stream.on('error', (error: grpc.ServiceError) => resolve({ ids, error }));
        stream.on('end', () => resolve({ ids, error: undefined }));
      });

    const ok = await collect('dep-7');
    expect(ok).toEqual({ ids: ['dep-7', 'dep-7'], error: undefined });

    const failed = await collect('gone');
    expect(failed.ids).toEqual(['gone', 'gone']);
    expect(failed.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(fieldOf(failed.error)).toBe('deployment_id');
  });

  it('answers UNIMPLEMENTED for methods registered with notImplemented', async () => {
    const err = await rejection(
      callUnary(deploymentClient, 'getDeployment', control.GetDeploymentRequest.fromPartial({ deploymentId: 'x' })),
    );
    expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(err.details).toContain('not implemented yet');
  });

  it('serves reflection listing exactly the services it serves', async () => {
    const require = createRequire(import.meta.url);
    const protoDir = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto');
    const definition = protoLoader.loadSync('grpc/reflection/v1alpha/reflection.proto', {
      includeDirs: [protoDir],
      keepCase: true,
      oneofs: true,
    });
    interface ReflectionResponse {
      list_services_response?: { service: Array<{ name: string }> };
      file_descriptor_response?: { file_descriptor_proto: Buffer[] };
    }
    type ReflectionClient = grpc.Client & {
      ServerReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse>;
    };
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: {
        reflection: {
          v1alpha: {
            ServerReflection: new (
              address: string,
              creds: grpc.ChannelCredentials,
              options?: grpc.ClientOptions,
            ) => ReflectionClient;
          };
        };
      };
    };
    // Reflection stays open like health: TLS, no token.
    const channel = clientChannel(server.address, health);
    const client = new loaded.grpc.reflection.v1alpha.ServerReflection(
      server.address,
      channel.credentials,
      channel.options,
    );
    // The same exchange grpcurl does for `list` and `describe`.
    const exchange = (requests: object[]) =>
      new Promise<ReflectionResponse[]>((resolve, reject) => {
        const responses: ReflectionResponse[] = [];
        const call = client.ServerReflectionInfo();
        call.on('data', (r) => {
          responses.push(r);
          if (responses.length === requests.length) call.end();
        });
        call.on('error', reject);
        call.on('end', () => resolve(responses));
        for (const r of requests) call.write(r);
      });
    try {
      const [list, file] = await exchange([
        { list_services: '*' },
        { file_containing_symbol: 'stageline.planner.v1.PlannerService' },
      ]);
      const names = list?.list_services_response?.service.map((s) => s.name) ?? [];
      expect(names.sort()).toEqual(
        [
          'grpc.health.v1.Health',
          'grpc.reflection.v1.ServerReflection',
          'grpc.reflection.v1alpha.ServerReflection',
          'stageline.control.v1.DeploymentService',
          'stageline.planner.v1.PlannerService',
        ].sort(),
      );
      const files = file?.file_descriptor_response?.file_descriptor_proto ?? [];
      expect(files.length).toBeGreaterThan(0);
      expect(Buffer.concat(files).toString('latin1')).toContain('PlannerService');
    } finally {
      client.close();
    }
  });

  it('reports health per service and overall, and NOT_SERVING after setServing(false)', async () => {
    expect(await checkHealth(server.address, { security: health })).toBe('SERVING');
    expect(
      await checkHealth(server.address, { security: health, service: 'stageline.planner.v1.PlannerService' }),
    ).toBe('SERVING');
    await waitForServing(server.address, {
      security: health,
      timeoutMs: 5000,
      service: 'stageline.control.v1.DeploymentService',
    });

    const unknown = await rejection(
      checkHealth(server.address, { security: health, service: 'stageline.nope.v1.Nope' }),
    );
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);

    server.setServing(false);
    try {
      expect(await checkHealth(server.address, { security: health })).toBe('NOT_SERVING');
      expect(
        await checkHealth(server.address, { security: health, service: 'stageline.planner.v1.PlannerService' }),
      ).toBe('NOT_SERVING');
      await expect(waitForServing(server.address, { security: health, timeoutMs: 300 })).rejects.toThrow(/NOT_SERVING/);
    } finally {
      server.setServing(true);
    }
    expect(await checkHealth(server.address, { security: health })).toBe('SERVING');
  });
});

describe('shutdown', () => {
  it('stops answering and is idempotent', async () => {
    const { log } = captureLogger();
    const server = await startGrpcServer({
      address: '127.0.0.1:0',
      log,
      tls,
      services: [
        {
          definition: planner.PlannerServiceService,
          implementation: notImplemented(planner.PlannerServiceService),
          access: { services: ['control'] },
        },
      ],
    });
    await waitForServing(server.address, { security: health, timeoutMs: 5000 });
    await Promise.all([server.shutdown(), server.shutdown()]);
    const err = await rejection(checkHealth(server.address, { security: health }));
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
  });

  it('fails with a clear message when the address is taken', async () => {
    const { log } = captureLogger();
    const options = { log, tls, services: [] };
    const first = await startGrpcServer({ address: '127.0.0.1:0', ...options });
    try {
      await expect(startGrpcServer({ address: first.address, ...options })).rejects.toThrow(
        new RegExp(`cannot listen on ${first.address}`),
      );
    } finally {
      await first.shutdown();
    }
  });
});
