// Tokens, roles and projects on control's public API, and SnapshotService kept for the planner:
// a real control on PostgreSQL and NATS, reached over TLS the way every client reaches it.
import * as grpc from '@grpc/grpc-js';
import { type ClientSecurity, callUnary, connect, isServiceError } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { control, snapshot } from '@stageline/proto';
import { testSecurity, useIsolatedEnvironment } from '@stageline/testkit';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Caller,
  checkTokenRequest,
  isLive,
  issueToken,
  parseToken,
  secretMatches,
  type TokenRecord,
  visibleProjects,
} from '../src/domain/access.ts';
import { type RunningControl, startControl } from '../src/service.ts';
import { environmentEvents, testControlConfig } from './harness.ts';

const security = testSecurity();

async function refusal(promise: Promise<unknown>): Promise<{ code: grpc.status; details: string }> {
  try {
    await promise;
  } catch (e) {
    if (isServiceError(e)) return { code: e.code, details: e.details };
    throw e;
  }
  throw new Error('expected the call to be refused');
}

describe('tokens (pure)', () => {
  it('a token issued is parsed back to its id, and only its own secret matches', () => {
    fc.assert(
      fc.property(fc.uuid(), (id) => {
        const issued = issueToken(id);
        const parsed = parseToken(issued.token);
        expect(parsed?.id).toBe(id);
        expect(secretMatches(parsed!.secret, issued.secretHash)).toBe(true);
        expect(secretMatches(`${parsed!.secret.slice(1)}A`, issued.secretHash)).toBe(false);
        expect(issued.secretHash).not.toContain(parsed!.secret);
      }),
    );
    for (const bad of [
      '',
      'stl_',
      'Bearer x',
      `stl_${'0'.repeat(32)}_short`,
      `xyz_${'0'.repeat(32)}_${'a'.repeat(43)}`,
    ]) {
      expect(parseToken(bad)).toBeUndefined();
    }
  });

  it('a revoked or expired token is not live', () => {
    const now = new Date('2026-12-01T00:00:00Z');
    const token: TokenRecord = {
      id: 'i',
      name: 'n',
      role: 'ROLE_VIEWER',
      projects: [],
      secretHash: '',
      createdAt: now,
      expiresAt: undefined,
      revokedAt: undefined,
      createdBy: 'test',
    };
    expect(isLive(token, now)).toBe(true);
    expect(isLive({ ...token, revokedAt: now }, now)).toBe(false);
    expect(isLive({ ...token, expiresAt: now }, now)).toBe(false);
    expect(isLive({ ...token, expiresAt: new Date(now.getTime() + 1) }, now)).toBe(true);
  });

  it('a scoped caller never sees a project outside its list; an unscoped one sees what it asks for', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.constantFrom('a', 'b', 'c', 'd'), { maxLength: 3 }),
        fc.constantFrom('', 'a', 'b', 'c', 'd'),
        (projects, asked) => {
          const caller: Caller = { kind: 'token', tokenId: 't', tokenName: 'n', role: 'ROLE_VIEWER', projects };
          const visible = visibleProjects(caller, asked);
          if (projects.length === 0) expect(visible).toEqual(asked === '' ? undefined : [asked]);
          else for (const p of visible ?? ['<all>']) expect(projects).toContain(p);
          if (asked !== '' && visible !== undefined) for (const p of visible) expect(p).toBe(asked);
        },
      ),
    );
  });

  it('a token request names the field at fault', () => {
    const now = new Date();
    const ok: { name: string; role: string; projects: string[]; ttlSeconds: number } = {
      name: 'ci',
      role: 'ROLE_VIEWER',
      projects: [],
      ttlSeconds: 0,
    };
    expect(checkTokenRequest(ok, now)).toEqual({ role: 'ROLE_VIEWER', expiresAt: undefined });
    const cases: [Partial<typeof ok>, RegExp][] = [
      [{ name: '' }, /^name:/],
      [{ name: 'a b' }, /^name:/],
      [{ role: 'ROLE_UNSPECIFIED' }, /^role:/],
      [{ projects: ['Bad Project'] }, /^projects\[0\]:/],
      [{ projects: ['a', 'a'] }, /^projects:/],
      [{ ttlSeconds: 5 }, /^ttl_seconds:/],
    ];
    for (const [change, message] of cases) {
      expect(() => checkTokenRequest({ ...ok, ...change }, now)).toThrow(message);
    }
    expect(checkTokenRequest({ ...ok, ttlSeconds: 3600 }, now).expiresAt).toEqual(new Date(now.getTime() + 3_600_000));
  });
});

describe('control access', () => {
  const env = useIsolatedEnvironment();
  let running: RunningControl;
  const clients: grpc.Client[] = [];
  const client = <C extends grpc.Client>(
    Ctor: new (address: string, credentials: grpc.ChannelCredentials, options?: Partial<grpc.ClientOptions>) => C,
    creds: ClientSecurity,
  ): C => {
    const c = connect(Ctor, running.address, creds);
    clients.push(c);
    return c;
  };
  const tokenFor = async (name: string, role: control.Role, projects: string[] = []) => {
    const access = client(control.AccessServiceClient, security.user());
    return (await callUnary(access, 'createToken', { name, role, projects, ttlSeconds: '0' })).token;
  };
  const envs = (token: string) => client(control.EnvironmentServiceClient, security.user(token));
  const create = (token: string, project: string, name: string) =>
    callUnary(envs(token), 'createEnvironment', { project, name, runtime: '' });

  beforeAll(async () => {
    running = await startControl(
      testControlConfig(env),
      createLogger({ service: 'control-test', level: process.env.LOG_LEVEL ?? 'silent' }),
    );
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await running?.stop();
  });

  it('the bootstrap admin token works, and a token is shown once and stored only as a hash', async () => {
    const access = client(control.AccessServiceClient, security.user());
    const created = await callUnary(access, 'createToken', {
      name: 'ci-reader',
      role: control.Role.ROLE_VIEWER,
      projects: [],
      ttlSeconds: '3600',
    });
    expect(created.token).toMatch(/^stl_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/);
    expect(created.info).toMatchObject({ name: 'ci-reader', role: control.Role.ROLE_VIEWER });
    expect(created.info?.createdBy).toMatch(/^token:bootstrap-admin \(/);
    expect(created.info?.expiresAt).toBeInstanceOf(Date);

    const listed = await callUnary(access, 'listTokens', {});
    expect(listed.tokens.map((t) => t.name)).toEqual(expect.arrayContaining(['ci-reader', 'bootstrap-admin']));
    expect(JSON.stringify(control.ListTokensResponse.toJSON(listed))).not.toContain(created.token.slice(-43));

    const db = new pg.Client({ connectionString: env.databaseUrl });
    await db.connect();
    try {
      const { rows } = await db.query('select * from control.api_token');
      const dump = JSON.stringify(rows);
      expect(dump).not.toContain(created.token.slice(-43));
      expect(dump).not.toContain(security.adminToken.slice(-43));
    } finally {
      await db.end();
    }
    const taken = await refusal(
      callUnary(access, 'createToken', {
        name: 'ci-reader',
        role: control.Role.ROLE_VIEWER,
        projects: [],
        ttlSeconds: '0',
      }),
    );
    expect(taken.code).toBe(grpc.status.ALREADY_EXISTS);
  });

  it('UNAUTHENTICATED without a token or with a revoked one; the revocation takes effect at once', async () => {
    const none = await refusal(
      callUnary(client(control.EnvironmentServiceClient, { ca: security.ca }), 'listEnvironments', {
        project: '',
        pageSize: 0,
        pageToken: '',
      }),
    );
    expect(none.code).toBe(grpc.status.UNAUTHENTICATED);

    const token = await tokenFor('short-lived', control.Role.ROLE_VIEWER);
    await callUnary(envs(token), 'listEnvironments', { project: '', pageSize: 0, pageToken: '' });
    const access = client(control.AccessServiceClient, security.user());
    const id = parseToken(token)!.id;
    const revoked = await callUnary(access, 'revokeToken', { id });
    expect(revoked.token?.revokedAt).toBeInstanceOf(Date);
    const after = await refusal(
      callUnary(envs(token), 'listEnvironments', { project: '', pageSize: 0, pageToken: '' }),
    );
    expect(after).toMatchObject({ code: grpc.status.UNAUTHENTICATED, details: expect.stringMatching(/revoked/) });
  });

  it('each role does what it holds and is refused the rest, naming the role needed', async () => {
    const viewer = await tokenFor('viewer', control.Role.ROLE_VIEWER);
    const deployer = await tokenFor('deployer', control.Role.ROLE_DEPLOYER);
    const admin = await tokenFor('admin', control.Role.ROLE_ADMIN);

    const created = await create(admin, 'roles', 'staging');
    const environmentId = created.environment!.id;
    for (const token of [viewer, deployer, admin]) {
      expect((await callUnary(envs(token), 'getEnvironment', { environmentId })).environment?.name).toBe('staging');
    }
    const byViewer = await refusal(create(viewer, 'roles', 'other'));
    expect(byViewer).toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: expect.stringMatching(/CreateEnvironment needs ROLE_ADMIN; the token "viewer" has ROLE_VIEWER/),
    });
    const pipelines = client(control.PipelineServiceClient, security.user(deployer));
    const byDeployer = await refusal(
      callUnary(pipelines, 'createStage', { environmentId, name: 'extra', position: 0, description: '' }),
    );
    expect(byDeployer.code).toBe(grpc.status.PERMISSION_DENIED);
    const tokens = client(control.AccessServiceClient, security.user(deployer));
    expect((await refusal(callUnary(tokens, 'listTokens', {}))).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('a project-scoped token sees and acts on its projects only', async () => {
    const admin = await tokenFor('admin-all', control.Role.ROLE_ADMIN);
    const alpha = (await create(admin, 'alpha', 'one')).environment!;
    const beta = (await create(admin, 'beta', 'one')).environment!;
    const scoped = await tokenFor('alpha-admin', control.Role.ROLE_ADMIN, ['alpha']);

    const listed = await callUnary(envs(scoped), 'listEnvironments', { project: '', pageSize: 0, pageToken: '' });
    expect(listed.environments.map((e) => e.project)).toEqual(['alpha']);
    const asked = await callUnary(envs(scoped), 'listEnvironments', { project: 'beta', pageSize: 0, pageToken: '' });
    expect(asked.environments).toEqual([]);

    const hidden = await refusal(callUnary(envs(scoped), 'getEnvironment', { environmentId: beta.id }));
    expect(hidden).toMatchObject({ code: grpc.status.NOT_FOUND, details: expect.stringContaining(beta.id) });
    const clone = await refusal(
      callUnary(envs(scoped), 'cloneEnvironment', { sourceEnvironmentId: beta.id, name: 'copy', preview: false }),
    );
    expect(clone.code).toBe(grpc.status.NOT_FOUND);
    const pipelines = client(control.PipelineServiceClient, security.user(scoped));
    expect((await refusal(callUnary(pipelines, 'getPipeline', { environmentId: beta.id }))).code).toBe(
      grpc.status.NOT_FOUND,
    );
    const elsewhere = await refusal(create(scoped, 'beta', 'two'));
    expect(elsewhere).toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/"beta"/) });

    expect((await callUnary(envs(scoped), 'getEnvironment', { environmentId: alpha.id })).environment?.id).toBe(
      alpha.id,
    );
    expect((await create(scoped, 'alpha', 'two')).environment?.project).toBe('alpha');
  });

  it('every model change is recorded as the token that made it (EnvironmentEvent.actor)', async () => {
    const token = await tokenFor('release-bot', control.Role.ROLE_ADMIN);
    const id = parseToken(token)!.id;
    const environment = (await create(token, 'audit', 'one')).environment!;
    const pipelines = client(control.PipelineServiceClient, security.user(token));
    await callUnary(pipelines, 'createStage', {
      environmentId: environment.id,
      name: 'extra',
      position: 0,
      description: '',
    });
    const events = await environmentEvents(env.natsUrl, env.busPrefix, environment.id, 2);
    expect(events.map((e) => [e.event?.$case, e.actor])).toEqual([
      ['environmentCreated', `token:release-bot (${id})`],
      ['stageCreated', `token:release-bot (${id})`],
    ]);
  });

  it('SnapshotService (secret values in clear) answers the planner only — never a token, whatever its role', async () => {
    const admin = await tokenFor('admin-snap', control.Role.ROLE_ADMIN);
    const environmentId = (await create(admin, 'snap', 'one')).environment!.id;
    const request = { environmentId };

    const byAdmin = await refusal(
      callUnary(client(snapshot.SnapshotServiceClient, security.user(admin)), 'getEnvironmentSnapshot', request),
    );
    expect(byAdmin.code).toBe(grpc.status.PERMISSION_DENIED);
    const anonymous = await refusal(
      callUnary(client(snapshot.SnapshotServiceClient, { ca: security.ca }), 'getEnvironmentSnapshot', request),
    );
    expect(anonymous.code).toBe(grpc.status.UNAUTHENTICATED);
    const asDeploy = await refusal(
      callUnary(client(snapshot.SnapshotServiceClient, security.service('deploy')), 'getEnvironmentSnapshot', request),
    );
    expect(asDeploy.code).toBe(grpc.status.PERMISSION_DENIED);

    const asPlanner = await callUnary(
      client(snapshot.SnapshotServiceClient, security.service('planner')),
      'getEnvironmentSnapshot',
      request,
    );
    expect(asPlanner.environment?.id).toBe(environmentId);
  });
});
