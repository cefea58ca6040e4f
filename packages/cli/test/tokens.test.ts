import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRole, parseTtl } from '../src/commands/tokens.ts';
import { UsageError } from '../src/errors.ts';
import { useControl } from './control.ts';
import { stageline } from './run.ts';

// The CLI against a real control over TLS, with tokens: the admin token the dev set-up writes (as
// deploy/dev/stageline passes it, STAGELINE_CA and STAGELINE_TOKEN_FILE), and the tokens it makes.

const control = useControl();
const dir = mkdtempSync(join(tmpdir(), 'stageline-cli-tokens-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What deploy/dev/stageline sets up: the set-up's CA and admin token file; no config file. */
const adminEnv = (): NodeJS.ProcessEnv => ({
  HOME: dir,
  STAGELINE_CONFIG: join(dir, 'no-config.yaml'),
  STAGELINE_CA: control.security.ca,
  STAGELINE_TOKEN_FILE: control.security.adminTokenFile,
});
const cli = (args: string[], env: NodeJS.ProcessEnv = adminEnv()) =>
  stageline(['--address', control.address, ...args], env);
/** As the holder of `token` (STAGELINE_TOKEN wins over the admin's token file). */
const as = (token: string, args: string[]) => cli(args, { ...adminEnv(), STAGELINE_TOKEN: token });

async function createToken(name: string, ...args: string[]) {
  const r = await cli(['token', 'create', name, ...args, '-o', 'json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as {
    id: string;
    token: string;
    info: { id: string; name: string; role: string; projects?: string[]; expiresAt?: string; createdBy: string };
  };
}

const ENVIRONMENT = `project: demo
name: tokens
services:
  - name: web
    kind: CONTAINER
    container: { image: registry.example.com/team/web, tag: "1.0" }
  - name: api
    kind: APPLICATION
    application: { gitUrl: "https://git.example.com/team/api.git" }
`;

describe('token options', () => {
  it('reads roles and durations as people type them', () => {
    expect(parseRole('viewer')).toBe(1);
    expect(parseRole('DEPLOYER')).toBe(2);
    expect(parseRole('ROLE_ADMIN')).toBe(3);
    expect(() => parseRole('owner')).toThrow('--role must be one of viewer, deployer, admin');
    expect(parseTtl('0')).toBe(0);
    expect(parseTtl('3600s')).toBe(3600);
    expect(parseTtl('3600')).toBe(3600);
    expect(parseTtl('45m')).toBe(2700);
    expect(parseTtl('12h')).toBe(43_200);
    expect(parseTtl('30d')).toBe(2_592_000);
    expect(() => parseTtl('1y')).toThrow(UsageError);
    expect(() => parseTtl('-5s')).toThrow(UsageError);
  });
});

describe('tokens against control', () => {
  it('token create prints the token once (stdout: the token alone), -o json the CreateTokenResponse', async () => {
    const text = await cli(['token', 'create', 'reader', '--role', 'viewer']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^stl_[0-9a-f]{32}_[A-Za-z0-9_-]{43}\n$/);
    expect(text.stderr).toMatch(/^created token reader \(id [0-9a-f-]{36}\): viewer, projects all, expires never\n/);
    expect(text.stderr).toContain('it will not be shown again');

    const json = await createToken('ci', '--role', 'deployer', '--project', 'demo', '--project', 'web', '--ttl', '12h');
    expect(json.token).toMatch(/^stl_/);
    expect(json.info).toMatchObject({ id: json.id, name: 'ci', role: 'ROLE_DEPLOYER', projects: ['demo', 'web'] });
    const hours = (Date.parse(json.info.expiresAt!) - Date.now()) / 3_600_000;
    expect(hours).toBeGreaterThan(11.9);
    expect(hours).toBeLessThanOrEqual(12);
    // The admin token came from the set-up's file: the new one says who made it.
    expect(json.info.createdBy).toMatch(/^token:/);

    const bad = await cli(['token', 'create', 'x', '--role', 'owner']);
    expect(bad.code).toBe(2);
    const refused = await cli(['token', 'create', 'short', '--role', 'viewer', '--ttl', '10s']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('ttl_seconds');
  });

  it('token list: a table of every token, and the ListTokensResponse with -o json or yaml; never a secret', async () => {
    const made = await createToken('lister', '--role', 'viewer', '--project', 'demo', '--ttl', '30d');
    const table = await cli(['token', 'list']);
    expect(table.code).toBe(0);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^ID +NAME +ROLE +PROJECTS +CREATED +EXPIRES +REVOKED +CREATED BY$/);
    const row = rows.find((r) => r.startsWith(made.id));
    expect(row).toMatch(
      new RegExp(
        `^${made.id} +lister +viewer +demo +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +\\d{4}-\\d\\d-\\d\\d \\S+ +- +token:`,
      ),
    );
    // The set-up's admin token: every project, never expires, made by the bootstrap.
    expect(rows.some((r) => / admin +all +\S+ \S+ +never +- +bootstrap$/.test(r))).toBe(true);
    expect(table.stdout).not.toContain('stl_');

    const json = JSON.parse((await cli(['token', 'list', '-o', 'json'])).stdout) as { tokens: { id: string }[] };
    expect(json.tokens.map((t) => t.id)).toContain(made.id);
    const yaml = await cli(['token', 'list', '-o', 'yaml']);
    expect(yaml.stdout).toMatch(/^tokens:\n {2}- id: /);
    expect(yaml.stdout).toContain(`id: ${made.id}`);
  });

  it('a viewer reads but is refused changes: exit 3 and the server’s permission-denied message', async () => {
    const file = join(dir, 'tokens.yaml');
    writeFileSync(file, ENVIRONMENT);
    const applied = await cli(['apply', '-f', file]);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    const viewer = (await createToken('viewer', '--role', 'viewer')).token;

    const list = await as(viewer, ['env', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain('tokens');

    const clone = await as(viewer, ['env', 'clone', 'demo/tokens', 'copy']);
    expect(clone.code).toBe(3);
    expect(clone.stderr).toMatch(
      /^stageline: permission denied: stageline\.control\.v1\.EnvironmentService\/CloneEnvironment needs ROLE_ADMIN; the token "viewer" has ROLE_VIEWER\n/,
    );
    expect(clone.stderr).toContain('the token came from STAGELINE_TOKEN');
    const stage = await as(viewer, ['stage', 'create', 'later', '-e', 'demo/tokens']);
    expect(stage.code).toBe(3);
    expect(stage.stderr).toMatch(/^stageline: permission denied: .*CreateStage needs ROLE_ADMIN/);
    const tokens = await as(viewer, ['token', 'list']);
    expect(tokens.code).toBe(3);
    expect(tokens.stderr).toMatch(/^stageline: permission denied: .*ListTokens needs ROLE_ADMIN/);

    // The requester sent with actions stays: a deployer may act, a viewer may not.
    const deploy = await as(viewer, ['deploy', 'demo/tokens']);
    expect(deploy.code).toBe(3);
    expect(deploy.stderr).toMatch(/^stageline: permission denied: .*DeployEnvironment needs ROLE_DEPLOYER/);
  });

  it('a project-scoped token does not see other projects', async () => {
    const scoped = (await createToken('other-team', '--role', 'admin', '--project', 'other')).token;
    const names = async (r: Promise<{ code: number; stdout: string }>) => {
      const { code, stdout } = await r;
      expect(code).toBe(0);
      return ((JSON.parse(stdout) as { environments?: { project: string }[] }).environments ?? []).map(
        (e) => e.project,
      );
    };
    expect(await names(cli(['env', 'list', '-A', '-o', 'json']))).toContain('demo');
    expect(await names(as(scoped, ['env', 'list', '-A', '-o', 'json']))).toEqual([]);
    const get = await as(scoped, ['env', 'get', 'demo/tokens']);
    expect(get.code).toBe(2);
    expect(get.stderr).toContain('no environment demo/tokens');
  });

  it('token revoke (by id or name): the token is refused from then on, exit 3 and not authenticated', async () => {
    const made = await createToken('short-lived', '--role', 'viewer');
    expect((await as(made.token, ['env', 'list'])).code).toBe(0);
    const revoked = await cli(['token', 'revoke', made.id]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^token short-lived \\(${made.id}\\) revoked at \\S+ \\S+\\n$`));
    const after = await as(made.token, ['env', 'list']);
    expect(after.code).toBe(3);
    expect(after.stderr).toMatch(/^stageline: not authenticated: the token is unknown, revoked or expired\n/);
    const list = await cli(['token', 'list', '-o', 'json']);
    const token = (JSON.parse(list.stdout) as { tokens: { id: string; revokedAt?: string }[] }).tokens.find(
      (t) => t.id === made.id,
    );
    expect(token?.revokedAt).toBeDefined();

    const byName = await createToken('by-name', '--role', 'viewer');
    const r = await cli(['token', 'revoke', 'by-name', '-o', 'json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).token).toMatchObject({ id: byName.id, name: 'by-name' });
    expect((await cli(['token', 'revoke', 'by-name'])).code).toBe(2);
  });

  it('an unknown token and a CA that did not sign control’s certificate are refused, exit 3', async () => {
    const unknown = await as('stl_00000000000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', [
      'env',
      'list',
    ]);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/^stageline: not authenticated: the token is unknown, revoked or expired\n/);
    expect(unknown.stderr).not.toContain('AAAAAAAA');

    // control's own certificate is no CA: the handshake cannot verify the server.
    const wrongCa = await cli(['env', 'list'], { ...adminEnv(), STAGELINE_CA: control.security.files('control').cert });
    expect(wrongCa.code).toBe(3);
    expect(wrongCa.stderr).toMatch(
      new RegExp(
        `^stageline: no trusted TLS connection to Stageline at ${control.address} \\(UNAVAILABLE: .*certificate`,
      ),
    );
    expect(wrongCa.stderr).toContain(
      `verified against the CA ${control.security.files('control').cert} (from STAGELINE_CA); name another with --ca`,
    );
  });

  it('explain-build asks control (environment and service), which answers for the build service', async () => {
    const r = await cli(['explain-build', 'demo/tokens', '--service', 'api']);
    expect(r.code).toBe(3);
    // No build service listens at the address control was given.
    expect(r.stderr).toMatch(/^stageline: control could not ask the build service: /);
  });
});
