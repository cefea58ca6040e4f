// The web console's server: sign-in, the session cookie, CSRF, and the JSON gateway, against a real
// control (PostgreSQL, NATS, its gRPC server). Every refusal must be the one gRPC gives, since the
// gateway calls the same server with the user's token.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { callUnary, connect } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { useControl } from './harness.ts';

const ctl = useControl({ console: true });

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json(): Record<string, unknown>;
}

function request(
  method: string,
  path: string,
  options: { body?: unknown; cookie?: string; csrf?: string; origin?: string } = {},
): Promise<Reply> {
  const url = new URL(path, ctl.consoleUrl);
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca: readFileSync(ctl.security.ca),
        headers: {
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
          ...(options.cookie === undefined ? {} : { cookie: options.cookie }),
          ...(options.csrf === undefined ? {} : { 'x-stageline-csrf': options.csrf }),
          ...(options.origin === undefined ? {} : { origin: options.origin }),
        },
      },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) }),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function signIn(token: string) {
  const reply = await request('POST', '/api/session', { body: { token } });
  expect(reply.status, reply.body).toBe(200);
  const setCookie = String(reply.headers['set-cookie']);
  const cookie = setCookie.split(';')[0]!;
  return { cookie, csrf: String(reply.json().csrf), setCookie, session: reply.json() };
}

const api = (rpc: string) => `/api/stageline.control.v1.${rpc}`;

describe('console sign-in', () => {
  it('refuses an unknown token and gives a real one an HttpOnly, Secure, SameSite=Strict session', async () => {
    const bad = await request('POST', '/api/session', { body: { token: 'stl_nope' } });
    expect(bad.status).toBe(401);
    expect(bad.headers['set-cookie']).toBeUndefined();
    const missing = await request('POST', '/api/session', { body: {} });
    expect(missing.json()).toMatchObject({ error: { code: 'INVALID_ARGUMENT', field: 'token' } });

    const { setCookie, session, cookie } = await signIn(ctl.security.adminToken);
    expect(setCookie).toMatch(/^__Host-stageline-session=[A-Za-z0-9_-]{43};/);
    for (const attribute of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/']) expect(setCookie).toContain(attribute);
    // The session id is not the token: the browser never holds the token after sign-in.
    expect(setCookie).not.toContain(ctl.security.adminToken);
    expect(session).toMatchObject({ role: 'ROLE_ADMIN' });
    expect(session.allowed).toContain('PipelineService/moveService');
    expect((await request('GET', '/api/session', { cookie })).json()).toMatchObject({ role: 'ROLE_ADMIN' });
  });

  it('signs out: the session no longer calls anything', async () => {
    const { cookie, csrf } = await signIn(ctl.security.adminToken);
    expect((await request('DELETE', '/api/session', { cookie })).status).toBe(403); // no CSRF token
    expect((await request('DELETE', '/api/session', { cookie, csrf })).status).toBe(200);
    expect((await request('GET', '/api/session', { cookie })).status).toBe(401);
    const call = await request('POST', api('EnvironmentService/ListEnvironments'), { cookie, csrf, body: {} });
    expect(call.status).toBe(401);
  });
});

describe('console gateway', () => {
  it('calls the public API as the signed-in token, with the CSRF token and from its own origin only', async () => {
    const { cookie, csrf } = await signIn(ctl.security.adminToken);
    const body = { project: 'console', name: 'gw', runtime: 'local' };
    expect((await request('POST', api('EnvironmentService/CreateEnvironment'), { body })).status).toBe(401);
    const noCsrf = await request('POST', api('EnvironmentService/CreateEnvironment'), { cookie, body });
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.json()).toMatchObject({ error: { message: expect.stringContaining('CSRF') } });
    const foreign = await request('POST', api('EnvironmentService/CreateEnvironment'), {
      cookie,
      csrf,
      body,
      origin: 'https://evil.example',
    });
    expect(foreign.status).toBe(403);

    const created = await request('POST', api('EnvironmentService/CreateEnvironment'), {
      cookie,
      csrf,
      body,
      origin: ctl.consoleUrl,
    });
    expect(created.status, created.body).toBe(200);
    const environment = created.json().environment as { id: string; status: string };
    // Proto JSON: enums by name.
    expect(environment.status).toBe('ENVIRONMENT_STATUS_NEVER_DEPLOYED');
    // The same store gRPC reads: what the console made, the CLI sees.
    const got = await callUnary(ctl.environments, 'getEnvironment', { environmentId: environment.id });
    expect(got.environment?.name).toBe('gw');
    // A refusal carries the field, as on gRPC.
    const bad = await request('POST', api('PipelineService/CreateStage'), {
      cookie,
      csrf,
      body: { environmentId: environment.id, name: '' },
    });
    expect(bad.status).toBe(400);
    expect(bad.json()).toMatchObject({ error: { code: 'INVALID_ARGUMENT', field: 'name' } });
    // An unknown enum name is a clear 400, not a crash.
    const enumBad = await request('POST', api('DeploymentService/PlanDeployment'), {
      cookie,
      csrf,
      body: { environmentId: environment.id, action: 'ACTION_DANCE' },
    });
    expect(enumBad.status).toBe(400);
    expect(enumBad.json()).toMatchObject({
      error: {
        code: 'INVALID_ARGUMENT',
        field: 'action',
        message: 'action: "ACTION_DANCE" is not one of the enum\'s values',
      },
    });
    // Internal services are not reachable through the console.
    const internal = await request('POST', '/api/stageline.snapshot.v1.SnapshotService/GetSnapshot', {
      cookie,
      csrf,
      body: {},
    });
    expect(internal.status).toBe(404);
    // Streams are GETs (EventSource); a POST to one is refused.
    expect((await request('POST', api('DeploymentService/WatchDeployment'), { cookie, csrf, body: {} })).status).toBe(
      405,
    );
  });

  it('applies roles exactly as gRPC does: a viewer reads, and is refused what needs more, with the same message', async () => {
    const admin = await signIn(ctl.security.adminToken);
    const created = await request('POST', api('AccessService/CreateToken'), {
      ...admin,
      body: { name: 'console-viewer', role: 'ROLE_VIEWER', projects: [], ttlSeconds: '3600' },
    });
    expect(created.status, created.body).toBe(200);
    const viewerToken = String(created.json().token);
    const viewer = await signIn(viewerToken);
    expect(viewer.session.role).toBe('ROLE_VIEWER');
    expect(viewer.session.allowed).toContain('EnvironmentService/listEnvironments');
    expect(viewer.session.allowed).not.toContain('DeploymentService/deployEnvironment');
    expect(viewer.session.allowed).not.toContain('PipelineService/moveService');

    const list = await request('POST', api('EnvironmentService/ListEnvironments'), { ...viewer, body: {} });
    expect(list.status).toBe(200);
    const env = (list.json().environments as { id: string; name: string }[]).find((e) => e.name === 'gw');
    expect(env).toBeDefined();

    const refused = await request('POST', api('PipelineService/CreateStage'), {
      ...viewer,
      body: { environmentId: env!.id, name: 'sneaky' },
    });
    expect(refused.status).toBe(403);
    // gRPC's own words: the gateway went through the server's authorization, not a check of its own.
    const asViewer = connect(control.PipelineServiceClient, ctl.address, ctl.security.user(viewerToken));
    const viaGrpc = await callUnary(
      asViewer,
      'createStage',
      control.CreateStageRequest.fromPartial({ environmentId: env!.id, name: 'sneaky' }),
    ).catch((e: Error & { details?: string }) => e.details);
    asViewer.close();
    expect(refused.json()).toMatchObject({
      error: {
        code: 'PERMISSION_DENIED',
        message:
          'stageline.control.v1.PipelineService/CreateStage needs ROLE_ADMIN; the token "console-viewer" has ROLE_VIEWER',
      },
    });
    expect(viaGrpc).toBe((refused.json().error as { message: string }).message);
    const deploy = await request('POST', api('DeploymentService/DeployEnvironment'), {
      ...viewer,
      body: { environmentId: env!.id },
    });
    expect(deploy.json()).toMatchObject({ error: { code: 'PERMISSION_DENIED' } });

    // Revoked: the next call is refused, even on a live session.
    await request('POST', api('AccessService/RevokeToken'), { ...admin, body: { id: String(created.json().id) } });
    expect((await request('GET', '/api/session', { cookie: viewer.cookie })).status).toBe(401);
  });

  it('serves the app with a policy that allows nothing from elsewhere, and no file outside it', async () => {
    const page = await request('GET', '/');
    expect(page.status).toBe(200);
    expect(page.body).toContain('/assets/console.js');
    expect(String(page.headers['content-security-policy'])).toContain("default-src 'self'");
    const script = await request('GET', '/assets/console.js');
    expect(script.status).toBe(200);
    expect(script.headers['content-type']).toContain('text/javascript');
    const traversal = await request('GET', '/assets/..%2f..%2fpackage.json');
    expect(traversal.status).toBe(404);
  });
});
