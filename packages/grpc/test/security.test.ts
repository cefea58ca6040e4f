// Who gets through: TLS only, service identities from verified client certificates, bearer tokens
// with roles — each refusal with the code and words a caller needs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createLogger } from '@stageline/log';
import { control, planner } from '@stageline/proto';
import { testSecurity } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  callUnary,
  checkHealth,
  connect,
  describePrincipal,
  type GrpcServer,
  isServiceError,
  type Principal,
  principalOf,
  startGrpcServer,
  unary,
} from '../src/index.ts';

const log = createLogger({ service: 'grpc-security-test', level: 'silent' });
const security = testSecurity();
const repoRoot = join(import.meta.dirname, '../../..');

/** A second, unrelated CA with its own "planner" certificate: what an impostor could make. */
function foreignCredentials(): { ca: string; identity: { cert: string; key: string } } {
  const state = mkdtempSync(join(tmpdir(), 'stageline-foreign-ca-'));
  execFileSync('bash', [join(repoRoot, 'deploy/dev/credentials.sh'), state], { stdio: 'ignore' });
  return {
    ca: join(state, 'tls/ca.pem'),
    identity: { cert: join(state, 'tls/planner.pem'), key: join(state, 'tls/planner-key.pem') },
  };
}

const TOKENS: Record<string, Extract<Principal, { kind: 'token' }>> = {
  'viewer-secret': { kind: 'token', tokenId: 't-1', tokenName: 'ci-viewer', role: 'ROLE_VIEWER', projects: [] },
  'deployer-secret': { kind: 'token', tokenId: 't-2', tokenName: 'ci-deployer', role: 'ROLE_DEPLOYER', projects: [] },
};

async function code(promise: Promise<unknown>): Promise<{ code: grpc.status; details: string }> {
  try {
    await promise;
  } catch (e) {
    if (isServiceError(e)) return { code: e.code, details: e.details };
    throw e;
  }
  return { code: grpc.status.OK, details: '' };
}

/** PlannerService stands in for any service: getDeployment answers with the caller it saw. */
function echoService(access: {
  services?: string[];
  roles?: Record<string, 'ROLE_VIEWER' | 'ROLE_DEPLOYER' | 'ROLE_ADMIN'>;
}) {
  const answer = unary(log, async (_req: unknown, call: object) => ({
    deployment: control.Deployment.fromPartial({ id: describePrincipal(principalOf(call)) }),
  }));
  return {
    definition: planner.PlannerServiceService,
    implementation: {
      getDeployment: answer,
      submit: answer,
      plan: answer,
      listDeployments: answer,
    } as grpc.UntypedServiceImplementation,
    access,
  };
}

describe('gRPC security', () => {
  let open: GrpcServer; // takes tokens and service identities, like control
  let internal: GrpcServer; // service identities only, like the planner
  const foreign = foreignCredentials();

  beforeAll(async () => {
    open = await startGrpcServer({
      address: '127.0.0.1:0',
      services: [
        echoService({ services: ['planner'], roles: { getDeployment: 'ROLE_VIEWER', submit: 'ROLE_DEPLOYER' } }),
      ],
      tls: security.files('control'),
      verifyToken: async (token) => TOKENS[token],
      log,
    });
    internal = await startGrpcServer({
      address: '127.0.0.1:0',
      services: [echoService({ services: ['control'] })],
      tls: security.files('planner'),
      log,
    });
  });
  afterAll(async () => {
    await open?.shutdown();
    await internal?.shutdown();
  });

  const call = (
    address: string,
    creds: Parameters<typeof connect>[2],
    method: 'getDeployment' | 'submit' = 'getDeployment',
  ) => {
    const client = connect(planner.PlannerServiceClient, address, creds);
    const request = method === 'submit' ? { request: undefined } : { deploymentId: 'x' };
    return callUnary(client, method as 'getDeployment', request as planner.GetDeploymentRequest, {
      deadlineMs: 5000,
    }).finally(() => client.close());
  };

  it('refuses plaintext: a client without TLS never gets an answer', async () => {
    const client = new planner.PlannerServiceClient(open.address, grpc.credentials.createInsecure());
    const result = await code(callUnary(client, 'getDeployment', { deploymentId: 'x' }, { deadlineMs: 3000 }));
    client.close();
    expect(result.code).toBe(grpc.status.UNAVAILABLE);
  });

  it('serves health over TLS without a token', async () => {
    expect(await checkHealth(open.address, { security: { ca: security.ca } })).toBe('SERVING');
  });

  it('UNAUTHENTICATED without a token, with an unknown one, or with a malformed header', async () => {
    const none = await code(call(open.address, { ca: security.ca }));
    expect(none).toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
      details: expect.stringMatching(/token is required/),
    });
    const unknown = await code(call(open.address, { ca: security.ca, token: 'nope' }));
    expect(unknown).toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
      details: expect.stringMatching(/unknown, revoked or expired/),
    });

    const client = connect(planner.PlannerServiceClient, open.address, { ca: security.ca });
    const metadata = new grpc.Metadata();
    metadata.set('authorization', 'Basic dXNlcjpwYXNz');
    const malformed = await code(callUnary(client, 'getDeployment', { deploymentId: 'x' }, { metadata }));
    client.close();
    expect(malformed).toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: expect.stringMatching(/Bearer/) });
  });

  it('a token passes with its role, and PERMISSION_DENIED names the role a method needs', async () => {
    const viewer = await call(open.address, { ca: security.ca, token: 'viewer-secret' });
    expect(viewer.deployment?.id).toBe('token:ci-viewer (t-1)');
    const denied = await code(call(open.address, { ca: security.ca, token: 'viewer-secret' }, 'submit'));
    expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.details).toMatch(/Submit needs ROLE_DEPLOYER; the token "ci-viewer" has ROLE_VIEWER/);
    const deployer = await call(open.address, { ca: security.ca, token: 'deployer-secret' }, 'submit');
    expect(deployer.deployment?.id).toBe('token:ci-deployer (t-2)');
  });

  it('a service is known by its verified certificate, and only the identities a service names get in', async () => {
    const asPlanner = await call(open.address, security.service('planner'));
    expect(asPlanner.deployment?.id).toBe('service:planner');
    const asControl = await call(internal.address, security.service('control'));
    expect(asControl.deployment?.id).toBe('service:control');

    const wrongService = await code(call(internal.address, security.service('deploy')));
    expect(wrongService).toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: expect.stringMatching(/"deploy"/),
    });
  });

  it('an internal service refuses tokens of any role, and clients without a certificate', async () => {
    // The token is sent over a mutually authenticated channel of a service the server does not accept.
    const withToken = await code(call(internal.address, { ...security.service('build'), token: 'deployer-secret' }));
    expect(withToken.code).toBe(grpc.status.PERMISSION_DENIED);
    const noCertificate = await code(call(internal.address, { ca: security.ca }));
    expect(noCertificate).toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
      details: expect.stringMatching(/internal/),
    });
    // …while health stays open to probes, which present no certificate.
    expect(await checkHealth(internal.address, { security: { ca: security.ca } })).toBe('SERVING');
  });

  it('a certificate from another CA is no identity: the caller is anonymous', async () => {
    const impostorInternal = await code(call(internal.address, { ca: security.ca, identity: foreign.identity }));
    expect(impostorInternal.code).toBe(grpc.status.UNAUTHENTICATED);
    const impostorOpen = await code(call(open.address, { ca: security.ca, identity: foreign.identity }));
    expect(impostorOpen.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('a client verifies the server: a server certificate from another CA is refused', async () => {
    const result = await code(call(open.address, { ca: foreign.ca, token: 'viewer-secret' }));
    expect(result.code).toBe(grpc.status.UNAVAILABLE);
  });
});
