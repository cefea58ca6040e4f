// Runs taken further (issue 15, items 2, 3, 4, 6), end to end on the real stack (NATS, PostgreSQL,
// the mirror registry, podman): several services in one run, in stage order; a queued run says which
// run it waits for and a merged request is told so; a run failed mid-way by a failing service, resumed
// after the fix, runs only the rest (and is refused while a service that succeeded is configured
// differently); a rollback after an env var change serves the old value again.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { callUnary, isServiceError } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, stateName, useStack, watchToEnd } from './stack.ts';

const stack = useStack();
const { ServiceKind } = control;
const [REPO = '', TAG = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
const main = join(fileURLToPath(new URL('../..', import.meta.url)), 'packages/cli/src/main.ts');

/** The CLI as a user runs it: TLS with the test CA, the admin token, no config file. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const address = stack.procs.find((p) => p.name === 'control')!.address;
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['STAGELINE_ADDRESS', 'STAGELINE_PROJECT', 'STAGELINE_ENVIRONMENT', 'STAGELINE_TOKEN']) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, '--address', address, ...args], {
      env: {
        ...env,
        STAGELINE_CONFIG: '/nonexistent/stageline.yaml',
        STAGELINE_CA: stack.security.ca,
        STAGELINE_TOKEN_FILE: stack.security.adminTokenFile,
        NO_COLOR: '1',
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

interface Spec {
  name: string;
  stage: number;
  message: string;
  /** A probe on a port nothing listens on: never ready. */
  broken?: boolean;
}

function definition(spec: Spec, stages: string[], id = ''): control.Service {
  return control.Service.fromPartial({
    id,
    name: spec.name,
    kind: ServiceKind.SERVICE_KIND_CONTAINER,
    stageId: stages[spec.stage] ?? '',
    source: { $case: 'container', value: { image: REPO, tag: TAG, ports: [{ port: 8080, public: true }] } },
    envVars: [{ key: 'MESSAGE', value: spec.message, secret: false }],
    readinessTimeoutSeconds: spec.broken ? 3 : 30,
    healthCheck: {
      probe: { $case: 'tcp', value: { port: spec.broken ? 9999 : 8080 } },
      periodSeconds: 1,
    },
  });
}

async function environment(name: string, specs: Spec[]) {
  const created = await createEnvironment(stack, name);
  const envId = created.environment!.id;
  const stages = created.pipeline!.stages.map((s) => s.id);
  const ids: Record<string, string> = {};
  for (const spec of specs) {
    const { service } = await callUnary(stack.environments, 'addService', {
      environmentId: envId,
      service: definition(spec, stages),
    });
    ids[spec.name] = service!.id;
  }
  const update = (spec: Spec) =>
    callUnary(stack.environments, 'updateService', {
      environmentId: envId,
      service: definition(spec, stages, ids[spec.name]),
    });
  return { envId, ids, update };
}

const deployEnv = async (environmentId: string, requester = 'e2e', versions: Record<string, string> = {}) =>
  (await callUnary(stack.deployments, 'deployEnvironment', { environmentId, requester, forceBuild: false, versions }))
    .deployment!;
const byName = (d: control.Deployment) => Object.fromEntries(d.services.map((s) => [s.name, s]));
const states = (d: control.Deployment) => Object.fromEntries(d.services.map((s) => [s.name, stateName(s.status)]));

async function get(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return (await response.text()).trim();
}

async function refusal(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    if (isServiceError(e)) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('runs taken further', () => {
  it('several services in one run, in stage order; RedeployService; a per-service version pin', async () => {
    const { envId, ids } = await environment('several', [
      { name: 'first', stage: 0, message: 'one' },
      { name: 'second', stage: 2, message: 'two' },
      { name: 'other', stage: 1, message: 'three' },
    ]);
    const { deployment } = await callUnary(stack.deployments, 'deployService', {
      environmentId: envId,
      serviceId: '',
      serviceIds: [ids.second!, ids.first!],
      version: '',
      requester: 'e2e',
      forceBuild: false,
    });
    const run = await watchToEnd(stack, deployment!.id);
    expect(runStatusName(run.final.status), run.final.message).toBe('SUCCEEDED');
    // One run for both, listed (and deployed) in stage order; the third service is not part of it.
    expect(run.final.services.map((s) => s.name)).toEqual(['first', 'second']);
    expect(states(run.final)).toEqual({ first: 'DEPLOYED', second: 'DEPLOYED' });
    const done = (name: string) => byName(run.final)[name]!.steps.at(-1)!.finishedAt!.getTime();
    const started = (name: string) => byName(run.final)[name]!.steps.at(-1)!.startedAt!.getTime();
    expect(started('second')).toBeGreaterThanOrEqual(done('first'));
    expect(await get(byName(run.final).second!.endpoints[0]!.url)).toBe('two');

    const { deployment: again } = await callUnary(stack.deployments, 'redeployService', {
      environmentId: envId,
      serviceIds: [ids.first!, ids.second!],
      requester: 'e2e',
      forceBuild: false,
    });
    const redeployed = await watchToEnd(stack, again!.id);
    expect(runStatusName(redeployed.final.status), redeployed.final.message).toBe('SUCCEEDED');
    expect(redeployed.final.action).toBe(control.Action.ACTION_REDEPLOY);
    expect(redeployed.final.serviceIds.toSorted()).toEqual([ids.first!, ids.second!].toSorted());

    // The CLI: repeated --service is one run.
    const both = await cli(['deploy', 'e2e/several', '--service', 'other', '--service', 'first', '-o', 'json']);
    expect(both.code, both.stderr).toBe(0);
    const bothRun = await watchToEnd(stack, JSON.parse(both.stdout).deployment.id);
    expect(bothRun.final.services.map((s) => s.name)).toEqual(['first', 'other']);

    // An environment deploy that pins one service's version; a pin on an unknown service is refused.
    const pinned = await deployEnv(envId, 'e2e', { [ids.other!]: `tag:${TAG}` });
    expect(pinned.versions).toEqual({ [ids.other!]: `tag:${TAG}` });
    const pinnedRun = await watchToEnd(stack, pinned.id);
    expect(runStatusName(pinnedRun.final.status), pinnedRun.final.message).toBe('SUCCEEDED');
    expect(byName(pinnedRun.final).other!.version).toBe(`tag:${TAG}`);
    const unknown = await refusal(deployEnv(envId, 'e2e', { '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b': 'tag:x' }));
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    expect(unknown.details).toContain('versions[');
    // Bad input names its field.
    const none = await refusal(
      callUnary(stack.deployments, 'stopService', {
        environmentId: envId,
        serviceId: '',
        serviceIds: [],
        version: '',
        requester: 'e2e',
        forceBuild: false,
      }),
    );
    expect([none.code, none.details]).toEqual([grpc.status.INVALID_ARGUMENT, expect.stringContaining('service_ids')]);
    const badVersion = await refusal(deployEnv(envId, 'e2e', { [ids.other!]: 'tag:bad tag' }));
    expect(badVersion.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(badVersion.details).toContain(`versions[${ids.other}]`);
    const noRun = await refusal(callUnary(stack.deployments, 'resumeDeployment', { deploymentId: '', requester: '' }));
    expect([noRun.code, noRun.details]).toEqual([
      grpc.status.INVALID_ARGUMENT,
      expect.stringContaining('deployment_id'),
    ]);
  }, 240_000);

  it('a queued run says which run it waits for; an identical request is merged into it and told so', async () => {
    const { envId } = await environment('queue', [{ name: 'web', stage: 2, message: 'q' }]);
    const running = await deployEnv(envId, 'ana');
    const queued = await deployEnv(envId, 'bo');
    const merged = await deployEnv(envId, 'bo');
    expect(runStatusName(queued.status)).toBe('QUEUED');
    expect(queued.waitsFor).toBe(running.id);
    expect(queued.merged).toBe(false);
    expect(merged.id).toBe(queued.id);
    expect(merged.merged).toBe(true);
    // A read says where it stands, never "merged".
    const { deployment: read } = await callUnary(stack.deployments, 'getDeployment', { deploymentId: queued.id });
    expect(read!.waitsFor).toBe(running.id);
    expect(read!.merged).toBe(false);
    // A third run waits for the second; when the queue moves, the runs still queued say so as it happens.
    const third = await deployEnv(envId, 'cy');
    expect(third.waitsFor).toBe(queued.id);
    expect(third.queuePosition).toBe(2);
    const watchingThird = watchToEnd(stack, third.id);
    await callUnary(stack.deployments, 'cancelDeployment', { deploymentId: queued.id });
    expect(runStatusName((await watchToEnd(stack, running.id)).final.status)).toBe('SUCCEEDED');
    const after = await watchingThird;
    expect(runStatusName(after.final.status)).toBe('SUCCEEDED');
    expect(after.final.waitsFor).toBe('');
    const moved = after.updates.find(
      (u) => runStatusName(u.status) === 'QUEUED' && u.queuePosition === 1 && u.waitsFor !== '',
    );
    // Next in line, waiting for the run that was going then (the first, or the second if it had started).
    expect(moved?.waitsFor).toMatch(new RegExp(`^(${running.id}|${queued.id})$`));
  }, 240_000);

  it('a run failed mid-way, resumed after the fix, runs only the rest; refused while a service that succeeded differs', async () => {
    const specs = {
      db: { name: 'db', stage: 0, message: 'db' },
      api: { name: 'api', stage: 1, message: 'api', broken: true },
      web: { name: 'web', stage: 2, message: 'web' },
    } satisfies Record<string, Spec>;
    const { envId, update } = await environment('resume', Object.values(specs));
    const failed = await watchToEnd(stack, (await deployEnv(envId)).id);
    expect(runStatusName(failed.final.status)).toBe('FAILED');
    expect(states(failed.final).db).toBe('DEPLOYED');
    expect(states(failed.final).api).toBe('DEPLOYMENT_ERROR');
    expect(states(failed.final).web).not.toBe('DEPLOYED');

    const resume = () =>
      callUnary(stack.deployments, 'resumeDeployment', { deploymentId: failed.final.id, requester: 'e2e' });
    // A service that succeeded is configured differently since: reusing it would be unsafe.
    await update({ ...specs.db, message: 'db changed' });
    const unsafe = await refusal(resume());
    expect(unsafe.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(unsafe.details).toContain('service "db", which succeeded, is configured differently since');
    await update(specs.db);

    // The fix is to the service that failed: allowed. Through the CLI, watched to its end.
    await update({ ...specs.api, broken: false });
    const resumedCli = await cli(['resume', failed.final.id, '--watch', '-o', 'json']);
    expect(resumedCli.code, resumedCli.stderr).toBe(0);
    const deployment = control.Deployment.fromJSON(JSON.parse(resumedCli.stdout).deployment);
    expect(deployment.resumedFrom).toBe(failed.final.id);
    const resumed = { final: deployment };
    expect(runStatusName(resumed.final.status), resumed.final.message).toBe('SUCCEEDED');
    expect(states(resumed.final)).toEqual({ db: 'SKIPPED', api: 'DEPLOYED', web: 'DEPLOYED' });
    expect(byName(resumed.final).db!.message).toBe(`succeeded in run ${failed.final.id}`);
    expect(byName(resumed.final).db!.steps).toEqual([]);
    expect(await get(byName(resumed.final).api!.endpoints[0]!.url)).toBe('api');

    // Only FAILED or CANCELED runs resume; a run is resumed once.
    const twice = await refusal(resume());
    expect(twice.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(twice.details).toContain(`already resumed by run ${deployment.id}`);
    const succeeded = await refusal(
      callUnary(stack.deployments, 'resumeDeployment', { deploymentId: deployment.id, requester: 'e2e' }),
    );
    expect(succeeded.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(succeeded.details).toContain('SUCCEEDED');
  }, 240_000);

  it('a rollback after an env var change serves the old value again, and its plan says what changes', async () => {
    const web = { name: 'web', stage: 2, message: 'before' };
    const { envId, update } = await environment('rollback', [web]);
    // A lifecycle job in an earlier stage (a migration, say): a rollback does not run it unless asked.
    await callUnary(stack.environments, 'addService', {
      environmentId: envId,
      service: control.Service.fromPartial({
        name: 'migrate',
        kind: ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
        source: {
          $case: 'job',
          value: control.JobSource.fromPartial({
            from: { $case: 'container', value: { image: REPO, tag: TAG, ports: [] } },
            onDeploy: true,
            maxDurationSeconds: 60,
          }),
        },
        envVars: [{ key: 'EXAMPLE_SCRIPT', value: 'echo migrated', secret: false }],
      }),
    });
    const first = await watchToEnd(stack, (await deployEnv(envId)).id);
    expect(runStatusName(first.final.status), first.final.message).toBe('SUCCEEDED');
    const url = byName(first.final).web!.endpoints[0]!.url;
    expect(await get(url)).toBe('before');

    await update({ ...web, message: 'after' });
    const second = await watchToEnd(stack, (await deployEnv(envId)).id);
    expect(runStatusName(second.final.status)).toBe('SUCCEEDED');
    expect(await get(url)).toBe('after');

    const { deployment: plan } = await callUnary(stack.deployments, 'planDeployment', {
      environmentId: envId,
      action: control.Action.ACTION_ROLLBACK,
      serviceIds: [],
      version: '',
      forceBuild: false,
      toDeploymentId: first.final.id,
      versions: {},
    });
    expect(byName(plan!).web!.message).toBe('rollback: env MESSAGE back to their earlier value');
    expect(stateName(byName(plan!).migrate!.status)).toBe('SKIPPED');
    expect(byName(plan!).migrate!.message).toContain('run_lifecycle_jobs');
    const planned = await cli(['plan', 'e2e/rollback', '--action', 'rollback', '--to', first.final.id]);
    expect(planned.code, planned.stderr).toBe(0);
    expect(planned.stdout).toContain('rollback: env MESSAGE back to their earlier value');
    expect(planned.stdout).toContain('skip: a rollback does not run lifecycle jobs again');

    const { deployment } = await callUnary(stack.deployments, 'rollbackEnvironment', {
      environmentId: envId,
      toDeploymentId: first.final.id,
      requester: 'e2e',
    });
    const back = await watchToEnd(stack, deployment!.id);
    expect(runStatusName(back.final.status), back.final.message).toBe('SUCCEEDED');
    expect(await get(url)).toBe('before');
    expect(states(back.final)).toEqual({ migrate: 'SKIPPED', web: 'DEPLOYED' });

    // Asked for: the job runs again, at the version that run ran.
    const { deployment: withJobs } = await callUnary(stack.deployments, 'rollbackEnvironment', {
      environmentId: envId,
      toDeploymentId: first.final.id,
      requester: 'e2e',
      runLifecycleJobs: true,
    });
    expect(withJobs!.runLifecycleJobs).toBe(true);
    const again = await watchToEnd(stack, withJobs!.id);
    expect(runStatusName(again.final.status), again.final.message).toBe('SUCCEEDED');
    expect(states(again.final)).toEqual({ migrate: 'DEPLOYED', web: 'DEPLOYED' });
  }, 240_000);
});
