// The gRPC retry policy: UNAVAILABLE (a server restarting) is tried again inside the deadline; every
// other status is an answer. Real servers over TLS, started late or answering UNAVAILABLE on purpose.
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { DomainError, invalidArgument } from '@stageline/errors';
import { createLogger } from '@stageline/log';
import { planner } from '@stageline/proto';
import { testSecurity } from '@stageline/testkit';
import { describe, expect, it } from 'vitest';
import { callUnary, connect, type GrpcServer, isRetryableGrpcError, startGrpcServer, unary } from '../src/index.ts';

const security = testSecurity();
const log = createLogger({ service: 'grpc-retry-test', level: 'silent' });

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function startPlanner(address: string, submit: () => Promise<planner.SubmitResponse>): Promise<GrpcServer> {
  return startGrpcServer({
    address,
    log,
    tls: security.files('planner'),
    services: [
      {
        definition: planner.PlannerServiceService,
        implementation: { submit: unary(log, submit) },
        access: { services: ['control'] },
      },
    ],
  });
}

const request = { request: undefined };

describe('callUnary with the retry policy', () => {
  it('reaches a server that starts while the call is being tried', async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const client = connect(planner.PlannerServiceClient, address, security.service('control'));
    let server: GrpcServer | undefined;
    try {
      // Without the policy the call fails at once: nothing listens yet.
      const once = await callUnary(client, 'submit', request, { deadlineMs: 5_000 }).catch((e: unknown) => e);
      expect((once as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);

      const call = callUnary(client, 'submit', request, { deadlineMs: 20_000, retry: true });
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      server = await startPlanner(address, async () => ({ deployment: undefined }));
      await expect(call).resolves.toEqual({ deployment: undefined });
    } finally {
      client.close();
      await server?.shutdown();
    }
  });

  it('tries an UNAVAILABLE answer again, and takes any other answer as final', async () => {
    let calls = 0;
    const server = await startPlanner('127.0.0.1:0', async () => {
      calls++;
      if (calls < 3) throw new DomainError('UNAVAILABLE', 'the database is unavailable');
      throw invalidArgument('request.environment_id', 'is required');
    });
    const client = connect(planner.PlannerServiceClient, server.address, security.service('control'));
    try {
      const error = (await callUnary(client, 'submit', request, { retry: true }).catch(
        (e: unknown) => e,
      )) as grpc.ServiceError;
      expect(error.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(calls).toBe(3);
    } finally {
      client.close();
      await server.shutdown();
    }
  });

  it('gives up inside its window with the last UNAVAILABLE as it was', async () => {
    let calls = 0;
    const server = await startPlanner('127.0.0.1:0', async () => {
      calls++;
      throw new DomainError('UNAVAILABLE', 'the database is unavailable');
    });
    const client = connect(planner.PlannerServiceClient, server.address, security.service('control'));
    try {
      const error = (await callUnary(client, 'submit', request, { retry: { withinMs: 1_000 } }).catch(
        (e: unknown) => e,
      )) as grpc.ServiceError;
      expect(error.code).toBe(grpc.status.UNAVAILABLE);
      expect(error.details).toContain('the database is unavailable');
      expect(calls).toBeGreaterThan(1);
    } finally {
      client.close();
      await server.shutdown();
    }
  });

  it('does not retry a certificate the server will not take', () => {
    expect(isRetryableGrpcError({ code: grpc.status.UNAVAILABLE, details: 'No connection established' })).toBe(true);
    expect(
      isRetryableGrpcError({
        code: grpc.status.UNAVAILABLE,
        details: 'No connection established. Last error: self-signed certificate in certificate chain',
      }),
    ).toBe(false);
    expect(isRetryableGrpcError({ code: grpc.status.INVALID_ARGUMENT, details: 'bad' })).toBe(false);
  });
});
