// Smoke test of the real entry point: a child process on a free port, with its own bus prefix and database.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { callUnary, connect, fieldOf, isServiceError, waitForServing } from '@stageline/grpc';
import { build, bus } from '@stageline/proto';
import { dropBusPrefix, testSecurity, useIsolatedEnvironment } from '@stageline/testkit';
import { describe, expect, it } from 'vitest';

const SERVICE = 'build';
const GRPC_SERVICE = 'stageline.build.v1.BuildService';
// Its certificate and the CA, as every spawned service gets them (STAGELINE_TLS_DIR).
const security = testSecurity();
const entry = fileURLToPath(new URL('../src/main.ts', import.meta.url));

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  /** The address from the server's "listening" log line (it was started on port 0). */
  address: Promise<string>;
}

function start(env: Record<string, string>): Started {
  const child = spawn(process.execPath, [entry], {
    env: { ...process.env, ...security.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const address = new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const line = output.split('\n').find((l) => l.includes('"msg":"gRPC server listening"'));
      if (line !== undefined) resolve((JSON.parse(line) as { address: string }).address);
    });
    // A service that dies at start fails the test at once, with its output.
    void exited.then((code) => reject(new Error(`${SERVICE} exited with ${code} before listening:\n${output}`)));
  });
  // Marked handled here; a test that awaits it still sees the rejection.
  void address.catch(() => undefined);
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  return { child, output: () => output, exited, address };
}

describe(`${SERVICE} main`, () => {
  const isolated = useIsolatedEnvironment();

  it('serves health and BuildService, and drains on SIGTERM with exit code 0', async () => {
    const service = start({ ...isolated.env, GRPC_LISTEN: '127.0.0.1:0', LOG_LEVEL: 'info' });
    try {
      const address = await service.address;
      await waitForServing(address, { security: { ca: security.ca }, timeoutMs: 20_000, service: GRPC_SERVICE });

      // An internal service: only Stageline's own services call it (mutual TLS as planner).
      const client = connect(build.BuildServiceClient, address, security.service('planner'));
      try {
        const call = (request: Partial<build.ExplainBuildRequest>) =>
          callUnary(client, 'explainBuild', build.ExplainBuildRequest.fromPartial(request)).then(
            () => undefined,
            (e: unknown) => e,
          );
        const empty = await call({});
        expect(isServiceError(empty) && empty.code).toBe(grpc.status.INVALID_ARGUMENT);
        const unknown = await call({ serviceId: 'never-built' });
        expect(isServiceError(unknown) && unknown.code).toBe(grpc.status.NOT_FOUND);
        const missing = await callUnary(client, 'getBuild', { buildId: '0190b9a0-0000-7000-8000-000000000000' }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isServiceError(missing) && missing.code).toBe(grpc.status.NOT_FOUND);
        // PredictBuilds refuses a job it cannot read, naming it; an empty request predicts nothing.
        const badKind = await callUnary(client, 'predictBuilds', {
          jobs: [bus.BuildJob.fromPartial({ jobId: 'j1', service: { id: 's1' } })],
        }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isServiceError(badKind) && badKind.code).toBe(grpc.status.INVALID_ARGUMENT);
        expect(isServiceError(badKind) && fieldOf(badKind)).toBe('jobs[0].kind');
        expect((await callUnary(client, 'predictBuilds', { jobs: [] })).predictions).toEqual([]);
      } finally {
        client.close();
      }

      service.child.kill('SIGTERM');
      expect(await service.exited).toBe(0);
      expect(service.output()).toContain('"msg":"stopped"');
      // It created its streams under the prefix it was given (bus.ensureStreams ran).
      expect(await dropBusPrefix(isolated.natsUrl, isolated.busPrefix)).toContain(
        `${isolated.busPrefix.toUpperCase()}_REQUESTS`,
      );
    } finally {
      if (service.child.exitCode === null) service.child.kill('SIGKILL');
    }
  });

  it('refuses a bad configuration, naming the variable', async () => {
    const service = start({ GRPC_LISTEN: 'not-an-address' });
    expect(await service.exited).toBe(2);
    expect(service.output()).toContain('GRPC_LISTEN');
  });
});
