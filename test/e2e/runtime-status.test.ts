// Running status and live logs (issue 15, item 1), end to end on the real stack and real podman: after
// a deploy of the example's services, GetRuntimeStatus says RUNNING with a ready instance and the job
// COMPLETED; the service's own output streams (what the example app prints, live lines while
// following); a `podman kill` of the container turns it into ERROR with its exit code; the CLI's
// `status` and `logs --service` show the same; a token of another project sees nothing.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { callUnary, connect, isServiceError } from '@stageline/grpc';
import { control, deploy } from '@stageline/proto';
import { afterAll, describe, expect, it } from 'vitest';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, useStack, watchToEnd } from './stack.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const main = join(root, 'packages/cli/src/main.ts');
const dir = mkdtempSync(join(tmpdir(), 'stageline-runtime-'));
// The cron scheduler's clock, driven by the test (the jobs themselves run for real).
const clockFile = join(dir, 'cron-clock');
writeFileSync(clockFile, String(Date.now()));
const stack = useStack({ env: { DEPLOY_CRON_CLOCK_FILE: clockFile, DEPLOY_CRON_POLL_MS: '200' } });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const { ServiceKind } = control;
const RS = deploy.RuntimeState;
const [EXAMPLE_REPO = '', EXAMPLE_TAG = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
const stateOf = (s: deploy.ServiceRuntime | undefined) => (s ? deploy.runtimeStateToJSON(s.state) : 'absent');

async function status(environmentId: string) {
  const { services } = await callUnary(stack.deployments, 'getRuntimeStatus', { environmentId });
  return Object.fromEntries(services.map((s) => [s.serviceName, s]));
}

/** Reads a service's output; with `until`, follows it until a line matches (then cancels). */
function serviceLogs(
  request: Partial<control.StreamServiceLogsRequest>,
  until?: (l: deploy.ServiceLogLine) => boolean,
  onStarted?: () => void,
): Promise<deploy.ServiceLogLine[]> {
  const lines: deploy.ServiceLogLine[] = [];
  const call = stack.deployments.streamServiceLogs(control.StreamServiceLogsRequest.fromPartial(request), {
    deadline: Date.now() + 60_000,
  });
  return new Promise((resolve, reject) => {
    let started = false;
    call.on('data', (m: control.StreamServiceLogsResponse) => {
      if (!m.line) return;
      lines.push(m.line);
      if (!started) {
        started = true;
        onStarted?.();
      }
      if (until?.(m.line)) call.cancel();
    });
    call.on('end', () => resolve(lines));
    call.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve(lines) : reject(e)));
  });
}

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const address = stack.procs.find((p) => p.name === 'control')!.address;
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const k of ['STAGELINE_ADDRESS', 'STAGELINE_TOKEN', 'STAGELINE_DEFAULT_CA', 'STAGELINE_DEFAULT_TOKEN_FILE']) {
      delete env[k];
    }
    const child = spawn(process.execPath, [main, '--address', address, ...args], {
      env: {
        ...env,
        NO_COLOR: '1',
        STAGELINE_CONFIG: join(dir, 'no-config.yaml'),
        STAGELINE_CA: stack.security.ca,
        STAGELINE_TOKEN_FILE: stack.security.adminTokenFile,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function until<T>(what: string, read: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('running status and live logs', () => {
  it("RUNNING with a ready instance, the example's output streamed, ERROR with exit 137 after podman kill", async () => {
    const { environment, pipeline } = await createEnvironment(stack, 'running');
    const envId = environment!.id;
    const stage = (name: string) => pipeline!.stages.find((s) => s.name === name)!.id;
    // The example's web service and its lifecycle job (deploy/examples/demo-staging.yaml), on the example image.
    await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: envId,
        service: {
          name: 'bootstrap',
          kind: ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
          stageId: stage('DEFAULT JOB'),
          source: {
            $case: 'job',
            value: control.JobSource.fromPartial({
              from: { $case: 'container', value: { image: EXAMPLE_REPO, tag: EXAMPLE_TAG, ports: [] } },
              onDeploy: true,
              maxDurationSeconds: 60,
            }),
          },
          envVars: [{ key: 'EXAMPLE_SCRIPT', value: 'echo "bootstrapping ($STAGELINE_JOB_EVENT)"', secret: false }],
        },
      }),
    );
    const { service: web } = await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: envId,
        service: {
          name: 'web',
          kind: ServiceKind.SERVICE_KIND_CONTAINER,
          stageId: stage('DEFAULT CONTAINER'),
          source: {
            $case: 'container',
            value: { image: EXAMPLE_REPO, tag: EXAMPLE_TAG, ports: [{ port: 8080, public: true }] },
          },
          envVars: [
            { key: 'MESSAGE', value: 'Hello from Stageline: web is up', secret: false },
            { key: 'API_TOKEN', value: 'e2e-token-never-shown', secret: true },
            // It prints its secret first (a careless app), then serves as the example does.
            {
              key: 'EXAMPLE_SCRIPT',
              value: 'echo "token is $API_TOKEN"; unset EXAMPLE_SCRIPT; exec /bin/stageline-example',
              secret: false,
            },
          ],
          healthCheck: { probe: { $case: 'http', value: { path: '/', port: 8080 } }, periodSeconds: 1 },
        },
      }),
    );
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      environmentId: envId,
      requester: 'e2e',
      forceBuild: false,
      versions: {},
    });
    const { final } = await watchToEnd(stack, deployment!.id, 180_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    const url = final.services.find((s) => s.name === 'web')!.endpoints[0]!.url;

    // Running: one ready instance, no restart; the job ran.
    const running = await status(envId);
    expect(stateOf(running.web), running.web?.message).toBe('RUNTIME_STATE_RUNNING');
    expect(running.web!.instances).toHaveLength(1);
    const instance = running.web!.instances[0]!;
    expect(instance).toMatchObject({ state: 'running', ready: true, restarts: 0, hasLastExit: false });
    expect(instance.name).toMatch(/^web-[0-9a-f]{12}-pod-0$/);
    expect(instance.startedAt).toBeInstanceOf(Date);
    expect(running.web!.observedAt).toBeInstanceOf(Date);
    expect(stateOf(running.bootstrap)).toBe('RUNTIME_STATE_COMPLETED');

    // The service's own output: the line the example app prints when it starts, with instance and time.
    const lines = await serviceLogs({ environmentId: envId, serviceId: web!.id, follow: false, tailLines: 100 });
    const serving = lines.find((l) => l.message === 'example: serving /www on port 8080');
    expect(serving, JSON.stringify(lines)).toBeDefined();
    expect(serving!.instance).toBe(instance.name);
    expect(serving!.timestamp).toBeInstanceOf(Date);
    // What a viewer reads never shows a secret the service was given.
    expect(lines.map((l) => l.message)).toContain('token is ***');
    expect(JSON.stringify(lines)).not.toContain('e2e-token-never-shown');
    // Followed: a request made after the stream started shows up in it (busybox httpd -v logs each one).
    const followed = await serviceLogs(
      { environmentId: envId, serviceId: web!.id, follow: true, tailLines: 1 },
      (l) => /response:200/.test(l.message),
      () => void fetch(url).then((r) => r.text()),
    );
    expect(
      followed.some((l) => /response:200/.test(l.message)),
      JSON.stringify(followed),
    ).toBe(true);
    // Following outlives the container: a restart (stop, start) ends its log, and the new start's line comes.
    const restarted = serviceLogs(
      { environmentId: envId, serviceId: web!.id, follow: true, since: new Date() },
      (l) => l.message === 'example: serving /www on port 8080',
    );
    const { deployment: restart } = await callUnary(stack.deployments, 'restartService', {
      environmentId: envId,
      serviceId: web!.id,
      serviceIds: [],
      version: '',
      requester: 'e2e',
      forceBuild: false,
    });
    expect(runStatusName((await watchToEnd(stack, restart!.id, 120_000)).final.status)).toBe('SUCCEEDED');
    expect((await restarted).map((l) => l.message)).toContain('example: serving /www on port 8080');

    // A lifecycle job's output is what its run captured.
    const jobLines = await serviceLogs({ environmentId: envId, serviceId: running.bootstrap!.serviceId });
    expect(jobLines.map((l) => l.message)).toContain('bootstrapping (DEPLOY)');

    // The CLI: both columns in `status`, and `logs --service` without --run reads the service's output.
    const shown = await cli(['status', 'e2e/running']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/STATE +RUNNING +INSTANCES/);
    expect(shown.stdout).toMatch(/web +RESTARTED +RUNNING +1\/1 ready/);
    expect(shown.stdout).toMatch(/bootstrap +DEPLOYED +COMPLETED/);
    const cliLogs = await cli(['logs', 'e2e/running', '--service', 'web', '--no-follow']);
    expect(cliLogs.code, cliLogs.stderr).toBe(0);
    expect(cliLogs.stdout).toMatch(/^\S+Z web-[0-9a-f]{12}-pod-0 example: serving \/www on port 8080$/m);

    // Killed from outside: nothing restarts it (podman kill is a stop by the user), so no instance is ready.
    const container = `${instance.name}-web`;
    await run('podman', ['kill', container]);
    const killed = await until(
      'web after podman kill',
      () => status(envId),
      (s) => s.web?.state === RS.RUNTIME_STATE_ERROR || s.web?.state === RS.RUNTIME_STATE_WARNING,
    );
    expect(stateOf(killed.web), killed.web?.message).toBe('RUNTIME_STATE_ERROR');
    expect(killed.web!.instances[0]).toMatchObject({
      ready: false,
      state: 'exited',
      hasLastExit: true,
      lastExitCode: 137,
      lastExitReason: 'killed (SIGKILL)',
    });
    expect(killed.web!.message).toContain('exited with code 137');
    const after = await cli(['status', 'e2e/running']);
    expect(after.stdout).toMatch(/web +RESTARTED +ERROR +0\/1 ready, exit 137 \(killed \(SIGKILL\)\)/);
  }, 300_000);

  it("a cron job: COMPLETED between runs, its last run as the instance, its runs' output as its logs", async () => {
    const { environment, pipeline } = await createEnvironment(stack, 'cron');
    const envId = environment!.id;
    const { service: cron } = await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: envId,
        service: {
          name: 'ticker',
          kind: ServiceKind.SERVICE_KIND_CRON_JOB,
          stageId: pipeline!.stages.find((s) => s.name === 'DEFAULT JOB')!.id,
          source: {
            $case: 'job',
            value: control.JobSource.fromPartial({
              from: { $case: 'container', value: { image: EXAMPLE_REPO, tag: EXAMPLE_TAG, ports: [] } },
              schedule: '* * * * *',
              maxDurationSeconds: 60,
            }),
          },
          envVars: [{ key: 'EXAMPLE_SCRIPT', value: 'echo "cron job ran"', secret: false }],
        },
      }),
    );
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      environmentId: envId,
      requester: 'e2e',
      forceBuild: false,
      versions: {},
    });
    const { final } = await watchToEnd(stack, deployment!.id, 180_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    const before = await status(envId);
    expect(stateOf(before.ticker), before.ticker?.message).toBe('RUNTIME_STATE_COMPLETED');
    expect(before.ticker!.message).toBe('scheduled; no run yet');

    // The next minute's tick runs it.
    writeFileSync(clockFile, String(Math.ceil((Date.now() + 1_000) / 60_000) * 60_000 + 2_000));
    const ran = await until(
      'the cron run',
      () => status(envId),
      (s) => s.ticker?.instances[0]?.state === 'completed',
    );
    expect(stateOf(ran.ticker), ran.ticker?.message).toBe('RUNTIME_STATE_COMPLETED');
    expect(ran.ticker!.message).toBe('its last run succeeded');
    expect(ran.ticker!.instances[0]).toMatchObject({ hasLastExit: true, lastExitCode: 0 });
    const lines = await serviceLogs({ environmentId: envId, serviceId: cron!.id });
    expect(lines.map((l) => [l.instance, l.message])).toEqual([[ran.ticker!.instances[0]!.name, 'cron job ran']]);
  }, 240_000);

  it('the same permission model as the other reads: a token of another project sees no such environment', async () => {
    const { environment } = await createEnvironment(stack, 'private');
    const access = connect(
      control.AccessServiceClient,
      stack.procs.find((p) => p.name === 'control')!.address,
      stack.security.user(),
    );
    const { token } = await callUnary(access, 'createToken', {
      name: 'other-viewer',
      role: control.Role.ROLE_VIEWER,
      projects: ['other'],
      ttlSeconds: '0',
    });
    access.close();
    const other = connect(
      control.DeploymentServiceClient,
      stack.procs.find((p) => p.name === 'control')!.address,
      stack.security.user(token),
    );
    try {
      const refused = await callUnary(other, 'getRuntimeStatus', { environmentId: environment!.id }).catch((e) => e);
      expect(isServiceError(refused) ? refused.code : refused).toBe(grpc.status.NOT_FOUND);
      // An environment without a deploy: nothing runs.
      expect(
        (await callUnary(stack.deployments, 'getRuntimeStatus', { environmentId: environment!.id })).services,
      ).toEqual([]);
      // Bad input names its field; a service that runs nothing says so.
      const { service: idle } = await callUnary(
        stack.environments,
        'addService',
        control.AddServiceRequest.fromPartial({
          environmentId: environment!.id,
          service: {
            name: 'idle',
            kind: ServiceKind.SERVICE_KIND_CONTAINER,
            source: { $case: 'container', value: { image: EXAMPLE_REPO, tag: EXAMPLE_TAG, ports: [] } },
          },
        }),
      );
      const refusal = (r: Partial<control.StreamServiceLogsRequest>) =>
        serviceLogs({ environmentId: environment!.id, ...r }).then(
          () => 'no refusal',
          (e: unknown) => (isServiceError(e) ? [grpc.status[e.code], e.details] : e),
        );
      await expect(refusal({ serviceId: idle!.id })).resolves.toEqual([
        'FAILED_PRECONDITION',
        'the service has never been deployed: it runs nothing',
      ]);
      await expect(refusal({ serviceId: idle!.id, tailLines: 10_001 })).resolves.toEqual([
        'INVALID_ARGUMENT',
        'tail_lines: must be at most 10000',
      ]);
      await expect(refusal({ serviceId: '' })).resolves.toEqual(['INVALID_ARGUMENT', 'service_id: is required']);
      const missing = await callUnary(stack.deployments, 'getRuntimeStatus', { environmentId: '' }).catch((e) => e);
      expect(isServiceError(missing) ? [missing.code, missing.details] : missing).toEqual([
        grpc.status.INVALID_ARGUMENT,
        'environment_id: is required',
      ]);
    } finally {
      other.close();
    }
  });
});
