import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callUnary, connect } from '@stageline/grpc';
import { control as proto } from '@stageline/proto';
import { afterAll, describe, expect, it } from 'vitest';
import { useControl } from './control.ts';
import { stageline } from './run.ts';

// stageline auto-deploy against a real control: the webhook secret shown once, the environment's
// triggers and a service's globs written through UpdateEnvironment and UpdateService.

const control = useControl();
const dir = mkdtempSync(join(tmpdir(), 'stageline-cli-auto-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cli = (args: string[]) =>
  stageline(['--address', control.address, ...args], {
    HOME: dir,
    STAGELINE_CONFIG: join(dir, 'no-config.yaml'),
    STAGELINE_CA: control.security.ca,
    STAGELINE_TOKEN_FILE: control.security.adminTokenFile,
  });

describe('stageline auto-deploy', () => {
  it('secret, settings and a service, then show', async () => {
    const environments = connect(proto.EnvironmentServiceClient, control.address, control.security.user());
    const { environment } = await callUnary(environments, 'createEnvironment', {
      project: 'cli',
      name: 'auto',
      runtime: '',
    });
    await callUnary(
      environments,
      'addService',
      proto.AddServiceRequest.fromPartial({
        environmentId: environment!.id,
        service: {
          name: 'api',
          kind: proto.ServiceKind.SERVICE_KIND_APPLICATION,
          source: { $case: 'application', value: { gitUrl: 'https://git.example.com/team/app.git', branch: 'main' } },
          envVars: [{ key: 'TOKEN', value: 'kept-secret', secret: true }],
        },
      }),
    );
    environments.close();

    const secret = await cli(['auto-deploy', 'secret', 'cli/auto', '-o', 'json']);
    expect(secret.code).toBe(0);
    const answer = JSON.parse(secret.stdout) as { secret: string; path: string };
    expect(answer.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(answer.path).toBe(`/hooks/${environment!.id}`);

    const settings = await cli(['auto-deploy', 'settings', 'cli/auto', '--poll', '60', '--preview-source']);
    expect(settings.code, settings.stderr).toBe(0);
    expect(settings.stdout).toContain('polling: every 60 s; preview source: yes');
    const tooFast = await cli(['auto-deploy', 'settings', 'cli/auto', '--poll', '5']);
    expect(tooFast.code).toBe(3);
    expect(tooFast.stderr).toContain('settings.auto_deploy.poll_interval_seconds');

    const on = await cli([
      '-e',
      'cli/auto',
      'auto-deploy',
      'service',
      'api',
      '--include',
      'api/**',
      '--exclude',
      '**/*.md',
    ]);
    expect(on.code, on.stderr).toBe(0);
    expect(on.stdout).toMatch(/api\s+on\s+api\/\*\*\s+\*\*\/\*\.md/);
    const badTag = await cli(['-e', 'cli/auto', 'auto-deploy', 'service', 'api', '--tag-pattern', 'v*']);
    expect(badTag.code).toBe(3);
    expect(badTag.stderr).toContain('service.auto_deploy.tag_pattern');

    const shown = await cli(['auto-deploy', 'show', 'cli/auto', '-o', 'json']);
    const json = JSON.parse(shown.stdout) as { settings: unknown; services: { name: string; autoDeploy: unknown }[] };
    expect(json.settings).toEqual({ pollIntervalSeconds: 60, previewSource: true });
    expect(json.services).toEqual([
      { name: 'api', autoDeploy: { enabled: true, includePaths: ['api/**'], excludePaths: ['**/*.md'] } },
    ]);
    // The secret never shows again.
    expect(shown.stdout).not.toContain(answer.secret);
  });
});
