// The deploy job handler end to end on the local runtime: real podman, real PostgreSQL, the busybox httpd
// test image. Every test uses its own environment id and removes its pods, volumes and network.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { isWorkerStopping, WorkerStopping } from '@stageline/bus';
import { type Database, newId, openDatabase } from '@stageline/db';
import { callUnary, connect, isServiceError, startGrpcServer } from '@stageline/grpc';
import { bus, control, deploy } from '@stageline/proto';
import { testSecurity, useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { entities } from '../src/adapters/db/entities.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { PgCredentialStore, PgHostPorts, PgReleaseStore } from '../src/adapters/db/release-store.ts';
import { FsChartStore } from '../src/adapters/fs/chart-store.ts';
import { releaseService } from '../src/adapters/grpc/release-service.ts';
import { LocalRuntime } from '../src/adapters/podman/local-runtime.ts';
import { Podman } from '../src/adapters/podman/podman.ts';
import { pickFreePort } from '../src/adapters/process/free-port.ts';
import { type DeployJobDeps, handleDeployJob } from '../src/app/deploy-job.ts';
import { keyedSerializer } from '../src/app/keyed-serializer.ts';
import { renderChart } from '../src/domain/chart.ts';
import { localContainerName, localNetworkName, localPodName } from '../src/domain/names.ts';
import { workloadFromJob } from '../src/domain/workload.ts';
import {
  cleanEnvironment,
  log,
  type RecordingContext,
  recordingContext,
  runner,
  secrets,
  testImage,
} from './support.ts';

const { Action, ServiceState, StepKind, StepOutcome } = control;

const isolated = useIsolatedEnvironment();
let db: Database;
let stateDir: string;
let deps: DeployJobDeps;
let store: PgReleaseStore;
let hostPorts: PgHostPorts;
let image: string;
const podman = new Podman({ runner });
const environments: string[] = [];

beforeAll(async () => {
  db = await openDatabase({ url: isolated.databaseUrl, schema: 'deploy', entities, migrations, log });
  stateDir = await mkdtemp(path.join(os.tmpdir(), 'deploy-state-'));
  store = new PgReleaseStore({ db, secrets });
  hostPorts = new PgHostPorts({ db, pickFreePort });
  const charts = new FsChartStore(path.join(stateDir, 'charts'), secrets);
  const local = new LocalRuntime({ podman, ports: hostPorts, charts, workDir: path.join(stateDir, 'local'), log });
  deps = {
    releases: store,
    charts,
    credentials: new PgCredentialStore({ db, secrets }),
    runtime: (name) => (name === 'local' ? local : undefined),
    serialize: keyedSerializer(),
    fingerprint: (value) => secrets.fingerprint(value),
    now: () => new Date(),
  };
  image = await testImage();
}, 120_000);

afterEach(async () => {
  for (const env of environments.splice(0)) await cleanEnvironment(env);
});

afterAll(async () => {
  await db?.close();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

function newEnvironment(): string {
  const id = newId();
  environments.push(id);
  return id;
}

interface ServiceOptions {
  name?: string;
  env?: Record<string, string>;
  secretEnv?: Record<string, string>;
  ports?: control.Port[];
  healthCheck?: control.HealthCheck;
  readinessTimeoutSeconds?: number;
  kind?: control.ServiceKind;
  source?: control.Service['source'];
}

function service(environmentId: string, serviceId: string, options: ServiceOptions = {}): control.Service {
  return control.Service.fromPartial({
    id: serviceId,
    environmentId,
    name: options.name ?? 'web',
    kind: options.kind ?? control.ServiceKind.SERVICE_KIND_CONTAINER,
    source: options.source ?? {
      $case: 'container',
      value: {
        image: '127.0.0.1:5001/examples/busybox',
        tag: '1.36',
        ports: options.ports ?? [{ port: 8080, public: true }],
      },
    },
    envVars: [
      ...Object.entries(options.env ?? {}).map(([key, value]) => ({ key, value, secret: false })),
      ...Object.entries(options.secretEnv ?? {}).map(([key, value]) => ({ key, value, secret: true })),
    ],
    readinessTimeoutSeconds: options.readinessTimeoutSeconds ?? 30,
    ...(options.healthCheck !== undefined ? { healthCheck: options.healthCheck } : {}),
  });
}

function job(
  environmentId: string,
  svc: control.Service,
  action: control.Action = Action.ACTION_DEPLOY,
  overrides: Partial<bus.DeployJob> = {},
): bus.DeployJob {
  const deploymentId = newId();
  return bus.DeployJob.fromPartial({
    jobId: `${deploymentId}:${svc.id}:deploy:1`,
    deploymentId,
    environmentId,
    project: 'demo',
    environmentName: 'test',
    action,
    service: svc,
    image: action === Action.ACTION_DEPLOY ? image : '',
    runtime: 'local',
    version: 'test',
    attempt: 1,
    ...overrides,
  });
}

async function run(j: bus.DeployJob): Promise<{ result: bus.JobFinished; ctx: RecordingContext }> {
  const ctx = recordingContext({ jobId: j.jobId, deploymentId: j.deploymentId, serviceId: j.service?.id ?? '' });
  const result = await handleDeployJob(deps, j, ctx);
  return { result, ctx };
}

async function get(url: string, file = ''): Promise<{ status: number; body: string }> {
  const response = await fetch(`${url}/${file}`, { signal: AbortSignal.timeout(5_000) });
  return { status: response.status, body: (await response.text()).trim() };
}

async function containerState(environmentId: string, name = 'web') {
  return podman.inspectContainer(localContainerName(environmentId, name));
}

describe('deploy jobs on the local runtime (podman)', () => {
  it('deploys a user string Helm would evaluate literally: the template holds the escape, the container the text', async () => {
    const env = newEnvironment();
    const serviceId = newId();
    const payload = '{{ lookup "v1" "Secret" "kube-system" "" }} and a lone {{';
    const deployed = await run(job(env, service(env, serviceId, { env: { GREETING: payload } })));
    expect(deployed.result).toMatchObject({ succeeded: true, state: ServiceState.SERVICE_STATE_DEPLOYED });
    expect(await get(deployed.result.endpoints[0]!.url)).toEqual({ status: 200, body: payload });
    const release = (await store.history(serviceId))[0]!;
    const files = (await deps.charts.read(release.chartPath))!;
    const configMap = files.find((f) => f.path === 'templates/configmap.yaml')!.content;
    expect(configMap).toContain('{{"{{"}} lookup');
    expect(configMap.replaceAll('{{"{{"}}', '')).not.toContain('{{');
  });

  it('deploys, answers HTTP on its endpoint, and redeploys a changed env var as a new revision', async () => {
    const env = newEnvironment();
    const serviceId = newId();
    const ports = [
      { port: 8080, public: true },
      { port: 9090, public: false },
    ];
    const first = await run(job(env, service(env, serviceId, { env: { GREETING: 'hello from revision 1' }, ports })));
    expect(first.result).toMatchObject({ succeeded: true, state: ServiceState.SERVICE_STATE_DEPLOYED, revision: 1 });
    expect(first.result.endpoints).toHaveLength(1);
    const endpoint = first.result.endpoints[0]!;
    expect(endpoint.port).toBe(8080);
    expect(endpoint.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await get(endpoint.url)).toEqual({ status: 200, body: 'hello from revision 1' });

    // One DEPLOYMENT step, started and finished with SUCCESS; progress and the container's own log streamed.
    expect(first.ctx.steps.map((s) => [s.kind, s.finished?.outcome])).toEqual([
      [StepKind.STEP_KIND_DEPLOYMENT, StepOutcome.STEP_OUTCOME_SUCCESS],
    ]);
    const step = first.ctx.steps[0]!.finished!;
    expect(step.finishedAt!.getTime()).toBeGreaterThanOrEqual(step.startedAt!.getTime());
    expect(first.ctx.lines.some((l) => l.includes('podman kube play'))).toBe(true);
    expect(first.ctx.lines.some((l) => l.startsWith('web | ') && l.includes('serving on 8080'))).toBe(true);

    // Only the public port is published, and only on 127.0.0.1.
    expect(await podman.podPorts(localPodName(env, 'web'))).toEqual({
      '8080/tcp': [`127.0.0.1:${new URL(endpoint.url).port}`],
    });

    // Other services of the environment reach it by name on the environment's network.
    const fromPeer = await runner.run('podman', [
      'run',
      '--rm',
      '--network',
      localNetworkName(env),
      '--label',
      `stageline.io/environment-id=${env}`,
      '--entrypoint',
      '/bin/sh',
      image,
      '-c',
      'busybox wget -q -O - http://web:8080/',
    ]);
    expect(fromPeer.stdout.trim()).toBe('hello from revision 1');

    const second = await run(job(env, service(env, serviceId, { env: { GREETING: 'hello from revision 2' }, ports })));
    expect(second.result).toMatchObject({ succeeded: true, state: ServiceState.SERVICE_STATE_DEPLOYED, revision: 2 });
    // The host port is the service's: the same across revisions.
    expect(second.result.endpoints).toEqual(first.result.endpoints);
    expect(await get(endpoint.url)).toEqual({ status: 200, body: 'hello from revision 2' });

    const history = await store.history(serviceId);
    expect(history.map((r) => [r.revision, r.status])).toEqual([
      [2, 'DEPLOYED'],
      [1, 'SUPERSEDED'],
    ]);
    expect(history[0]!.configHash).not.toBe(history[1]!.configHash);
    expect(history[0]!.chartPath).toBe(path.join(stateDir, 'charts', env, serviceId, '2'));
    expect(history[0]!.hostPorts).toEqual([{ containerPort: 8080, hostPort: Number(new URL(endpoint.url).port) }]);
  });

  it('fails at once with the exit code and last log lines when the container exits, and removes a first release', async () => {
    const env = newEnvironment();
    const serviceId = newId();
    const { result, ctx } = await run(
      job(env, service(env, serviceId, { env: { EXIT_WITH: '3' }, readinessTimeoutSeconds: 120 })),
    );
    expect(result.succeeded).toBe(false);
    expect(result.state).toBe(ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR);
    expect(result.message).toContain('container exited with code 3');
    expect(result.message).toContain('fatal: told to exit');
    expect(result.message).not.toContain('not ready');
    const step = ctx.steps[0]!.finished!;
    expect(step.outcome).toBe(StepOutcome.STEP_OUTCOME_ERROR);
    expect(step.message).toContain('exited with code 3');
    // It was the first revision: nothing of it is left running, its host port is free again.
    expect(await podman.podExists(localPodName(env, 'web'))).toBe(false);
    expect(await hostPorts.ofEnvironment(env)).toEqual([]);
    expect((await store.history(serviceId)).map((r) => r.status)).toEqual(['FAILED']);
  });

  it('fails a never-ready revision after its readiness timeout, and the previous revision serves again', async () => {
    const env = newEnvironment();
    const serviceId = newId();
    const good = await run(job(env, service(env, serviceId, { env: { GREETING: 'good revision' } })));
    expect(good.result.succeeded).toBe(true);
    const url = good.result.endpoints[0]!.url;

    const never = await run(
      job(
        env,
        service(env, serviceId, {
          env: { GREETING: 'never ready' },
          healthCheck: control.HealthCheck.fromPartial({ probe: { $case: 'tcp', value: { port: 9999 } } }),
          readinessTimeoutSeconds: 3,
        }),
      ),
    );
    expect(never.result.succeeded).toBe(false);
    expect(never.result.state).toBe(ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR);
    expect(never.result.message).toMatch(/^not ready after 3s/);
    expect(never.result.message).toContain('rolled back: revision 1 serves again');
    expect(await get(url)).toEqual({ status: 200, body: 'good revision' });
    expect((await store.history(serviceId)).map((r) => [r.revision, r.status])).toEqual([
      [2, 'FAILED'],
      [1, 'DEPLOYED'],
    ]);
  });

  it('probes HTTP (2xx/3xx) and exec as the health check says, and fails a probe that never passes', async () => {
    const env = newEnvironment();
    const http = (path: string) =>
      control.HealthCheck.fromPartial({ probe: { $case: 'http', value: { path, port: 8080 } }, periodSeconds: 1 });
    const ok = await run(
      job(
        env,
        service(env, newId(), { name: 'http-ok', env: { GREETING: 'probed' }, healthCheck: http('/index.html') }),
      ),
    );
    expect(ok.result.state).toBe(ServiceState.SERVICE_STATE_DEPLOYED);
    expect(ok.ctx.lines.some((l) => /ready after .*GET http:\/\/127\.0\.0\.1:\d+\/index\.html: 200/.test(l))).toBe(
      true,
    );

    const missing = await run(
      job(env, service(env, newId(), { name: 'http-404', healthCheck: http('/missing'), readinessTimeoutSeconds: 3 })),
    );
    expect(missing.result.state).toBe(ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR);
    expect(missing.result.message).toMatch(/^not ready after 3s: GET http:\/\/127\.0\.0\.1:\d+\/missing: 404/);

    const exec = (command: string[]) =>
      control.HealthCheck.fromPartial({ probe: { $case: 'exec', value: { command } }, periodSeconds: 1 });
    const execOk = await run(
      job(
        env,
        service(env, newId(), { name: 'exec-ok', healthCheck: exec(['busybox', 'test', '-f', '/www/index.html']) }),
      ),
    );
    expect(execOk.result.state).toBe(ServiceState.SERVICE_STATE_DEPLOYED);
    const execFails = await run(
      job(
        env,
        service(env, newId(), {
          name: 'exec-no',
          healthCheck: exec(['busybox', 'test', '-f', '/never']),
          readinessTimeoutSeconds: 3,
        }),
      ),
    );
    expect(execFails.result.message).toMatch(/^not ready after 3s: exec busybox test -f \/never: exit 1/);
  });

  it('cancels a rollout in flight: CANCELED, and the previous revision serves again', async () => {
    const env = newEnvironment();
    const serviceId = newId();
    const good = await run(job(env, service(env, serviceId, { env: { GREETING: 'before the cancel' } })));
    const url = good.result.endpoints[0]!.url;

    const slow = job(
      env,
      service(env, serviceId, {
        env: { GREETING: 'canceled revision' },
        healthCheck: control.HealthCheck.fromPartial({ probe: { $case: 'tcp', value: { port: 9999 } } }),
        readinessTimeoutSeconds: 120,
      }),
    );
    const ctx = recordingContext({ jobId: slow.jobId, deploymentId: slow.deploymentId, serviceId });
    const pending = handleDeployJob(deps, slow, ctx);
    // Cancel once it is waiting for readiness.
    while (!ctx.lines.some((l) => l.startsWith('waiting for readiness'))) await new Promise((r) => setTimeout(r, 50));
    ctx.controller.abort();
    const result = await pending;
    expect(result).toMatchObject({ succeeded: false, state: ServiceState.SERVICE_STATE_CANCELED, revision: 2 });
    expect(ctx.steps[0]!.finished!.outcome).toBe(StepOutcome.STEP_OUTCOME_CANCELED);
    expect(await get(url)).toEqual({ status: 200, body: 'before the cancel' });
    expect((await store.history(serviceId)).map((r) => r.status)).toEqual(['ROLLED_BACK', 'DEPLOYED']);
  });

  it('hands a job back when the worker stops mid-rollout, and its redelivery resumes the same revision', async () => {
    const env = newEnvironment();
    const serviceId = newId();
    const slow = job(env, service(env, serviceId, { env: { GREETING: 'resumed', START_DELAY: '2' } }));
    const stopping = { ...deps, isShutdown: isWorkerStopping };

    const ctx = recordingContext({ jobId: slow.jobId, deploymentId: slow.deploymentId, serviceId });
    const pending = handleDeployJob(stopping, slow, ctx);
    while (!ctx.lines.some((l) => l.startsWith('waiting for readiness'))) await new Promise((r) => setTimeout(r, 50));
    ctx.controller.abort(new WorkerStopping());
    const error = await pending.catch((e: unknown) => e);
    // Retryable: the framework naks it; nothing recorded, nothing rolled back.
    expect(error).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    expect(await store.findResult(slow.jobId)).toBeUndefined();
    expect((await store.history(serviceId)).map((r) => [r.revision, r.status])).toEqual([[1, 'DEPLOYING']]);

    const redelivered = await run(slow);
    expect(redelivered.result).toMatchObject({
      succeeded: true,
      state: ServiceState.SERVICE_STATE_DEPLOYED,
      revision: 1,
    });
    expect(await get(redelivered.result.endpoints[0]!.url)).toEqual({ status: 200, body: 'resumed' });
    expect((await store.history(serviceId)).map((r) => [r.revision, r.status])).toEqual([[1, 'DEPLOYED']]);
  });

  it('never applies a late redelivery of an older job over a newer revision', async () => {
    const env = newEnvironment();
    const serviceId = newId();
    // Job A got revision 1 and its worker died mid-rollout (its release stays DEPLOYING) …
    const a = job(env, service(env, serviceId, { env: { GREETING: 'old job', START_DELAY: '5' } }));
    const ctxA = recordingContext({ jobId: a.jobId, deploymentId: a.deploymentId, serviceId });
    const stopping = { ...deps, isShutdown: () => true };
    const pending = handleDeployJob(stopping, a, ctxA);
    while (!ctxA.lines.some((l) => l.startsWith('waiting for readiness'))) await new Promise((r) => setTimeout(r, 20));
    ctxA.controller.abort(new WorkerStopping());
    await pending.catch(() => undefined);
    // … then the planner's next attempt (job B) deployed revision 2.
    const b = await run(job(env, service(env, serviceId, { env: { GREETING: 'new job' } })));
    expect(b.result).toMatchObject({ state: ServiceState.SERVICE_STATE_DEPLOYED, revision: 2 });

    const late = await run(a);
    expect(late.result.state).toBe(ServiceState.SERVICE_STATE_CANCELED);
    expect(late.result.message).toContain('revision 2 was made after');
    expect(await get(b.result.endpoints[0]!.url)).toEqual({ status: 200, body: 'new job' });
    // Revision 1 was stuck mid-install: job B recovered it (uninstalled: it was the first) before installing.
    expect(b.ctx.lines.some((l) => l.includes('recovered before the upgrade: revision 1 was left mid-install'))).toBe(
      true,
    );
    const history = await store.history(serviceId);
    expect(history.map((r) => [r.revision, r.status])).toEqual([
      [2, 'DEPLOYED'],
      [1, 'FAILED'],
    ]);
    expect(history[1]!.message).toBe('abandoned mid-rollout; recovered before revision 2');
  });

  it('applies a job delivered twice once, answering the second delivery with the recorded outcome', async () => {
    const env = newEnvironment();
    const serviceId = newId();
    const j = job(env, service(env, serviceId, { env: { GREETING: 'once' } }));
    const first = await run(j);
    const containerId = (await containerState(env))!.id;
    const again = await run(j);
    expect(again.result).toEqual(first.result);
    expect(again.result.endpoints).toHaveLength(1);
    // Nothing was applied again: no step, the same container.
    expect(again.ctx.steps).toEqual([]);
    expect((await containerState(env))!.id).toBe(containerId);
    expect(await store.history(serviceId)).toHaveLength(1);
  });

  it('stops (data kept), deploys again with the data, restarts, and deletes pod, volume, port and network membership', async () => {
    const env = newEnvironment();
    const serviceId = newId();
    // A container-mode database: its data lives in a named volume (the chart's PVC).
    const db = service(env, serviceId, {
      name: 'cache',
      kind: control.ServiceKind.SERVICE_KIND_DATABASE,
      source: {
        $case: 'database',
        value: { engine: control.DatabaseEngine.DATABASE_ENGINE_REDIS, version: '7', mode: 1, image: '' },
      },
      env: { PORT: '6379', DATA_DIR: '/data' },
    });
    const readData = async () =>
      (await runner.run('podman', ['exec', localContainerName(env, 'cache'), 'busybox', 'cat', '/data/log'])).stdout;

    const deployed = await run(job(env, db));
    expect(deployed.result.state).toBe(ServiceState.SERVICE_STATE_DEPLOYED);
    // Not public: no endpoint; ready through the TCP probe on the container's address.
    expect(deployed.result.endpoints).toEqual([]);
    expect(deployed.ctx.lines.some((l) => /ready after .*tcp 10\.\d+\.\d+\.\d+:6379/.test(l))).toBe(true);
    expect(await readData()).toBe('started\n');

    const stopped = await run(job(env, db, Action.ACTION_STOP));
    expect(stopped.result).toMatchObject({ succeeded: true, state: ServiceState.SERVICE_STATE_STOPPED });
    expect(stopped.ctx.steps.map((s) => [s.kind, s.finished?.outcome])).toEqual([
      [StepKind.STEP_KIND_STOP, StepOutcome.STEP_OUTCOME_SUCCESS],
    ]);
    expect((await containerState(env, 'cache'))!.status).not.toBe('running');
    expect((await store.history(serviceId))[0]!.status).toBe('STOPPED');

    const redeployed = await run(job(env, db));
    expect(redeployed.result).toMatchObject({ state: ServiceState.SERVICE_STATE_DEPLOYED, revision: 2 });
    expect(await readData()).toBe('started\nstarted\n');

    const before = (await containerState(env, 'cache'))!;
    const restarted = await run(job(env, db, Action.ACTION_RESTART));
    expect(restarted.result).toMatchObject({ succeeded: true, state: ServiceState.SERVICE_STATE_RESTARTED });
    expect(restarted.ctx.steps.map((s) => [s.kind, s.finished?.outcome])).toEqual([
      [StepKind.STEP_KIND_RESTART, StepOutcome.STEP_OUTCOME_SUCCESS],
    ]);
    expect(await readData()).toBe('started\nstarted\nstarted\n');
    expect((await containerState(env, 'cache'))!.id).toBe(before.id);

    const deleted = await run(job(env, db, Action.ACTION_DELETE));
    expect(deleted.result).toMatchObject({ succeeded: true, state: ServiceState.SERVICE_STATE_DELETED });
    expect(deleted.ctx.steps.map((s) => [s.kind, s.finished?.outcome])).toEqual([
      [StepKind.STEP_KIND_DELETE, StepOutcome.STEP_OUTCOME_SUCCESS],
    ]);
    expect(await podman.podExists(localPodName(env, 'cache'))).toBe(false);
    expect(await podman.volumesWithLabel('stageline.io/service-id', serviceId)).toEqual([]);
    // Its network membership went with the pod; the last service took the network along.
    const members = await runner.run('podman', ['ps', '-a', '-q', '--filter', `network=${localNetworkName(env)}`]);
    expect(members.stdout.trim()).toBe('');
    expect(await podman.networkExists(localNetworkName(env))).toBe(false);
    expect((await store.history(serviceId)).map((r) => r.status)).toEqual(['DELETED', 'SUPERSEDED']);
  });

  it('deletes a public service: its host port is released, and a new deploy starts a new revision', async () => {
    const env = newEnvironment();
    const serviceId = newId();
    const web = service(env, serviceId, { env: { GREETING: 'x' } });
    const first = await run(job(env, web));
    expect(await hostPorts.ofEnvironment(env)).toHaveLength(1);
    const deleted = await run(job(env, web, Action.ACTION_DELETE));
    expect(deleted.result.state).toBe(ServiceState.SERVICE_STATE_DELETED);
    expect(await hostPorts.ofEnvironment(env)).toEqual([]);
    await expect(get(first.result.endpoints[0]!.url)).rejects.toThrow();
    const again = await run(job(env, web));
    expect(again.result).toMatchObject({ state: ServiceState.SERVICE_STATE_DEPLOYED, revision: 2 });
  });

  it('leaves an unchanged service alone, applies again what stopped or changed, and always restarts on RESTART', async () => {
    // The mirror names images by digest, as the planner's jobs do: push the test image there.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'deploy-digest-'));
    const tagged = `127.0.0.1:5000/stageline-deploy-test/httpd:${newId().slice(0, 8)}`;
    await runner.run('podman', ['tag', image, tagged]);
    const pushed = await runner.run('podman', ['push', '--digestfile', path.join(dir, 'digest'), tagged]);
    expect(pushed.exitCode).toBe(0);
    const digest = (await readFile(path.join(dir, 'digest'), 'utf8')).trim();
    await rm(dir, { recursive: true, force: true });
    const pinned = `${tagged.slice(0, tagged.lastIndexOf(':'))}@${digest}`;

    const env = newEnvironment();
    const serviceId = newId();
    const svc = service(env, serviceId, { env: { GREETING: 'steady' } });
    const first = await run(job(env, svc, Action.ACTION_DEPLOY, { image: pinned }));
    expect(first.result).toMatchObject({ succeeded: true, state: ServiceState.SERVICE_STATE_DEPLOYED, revision: 1 });
    const container = (await containerState(env))!;

    // DEPLOY and REDEPLOY of the same image and configuration: recorded, nothing applied.
    for (const action of [Action.ACTION_DEPLOY, Action.ACTION_REDEPLOY]) {
      const again = await run(job(env, svc, action, { image: pinned }));
      expect(again.result).toMatchObject({ succeeded: true, state: ServiceState.SERVICE_STATE_DEPLOYED, revision: 1 });
      expect(again.result.message).toMatch(/^unchanged: revision 1 already runs this image and configuration/);
      expect(again.result.endpoints).toEqual(first.result.endpoints);
      expect(again.ctx.steps.map((s) => [s.kind, s.finished?.outcome])).toEqual([
        [StepKind.STEP_KIND_DEPLOYMENT, StepOutcome.STEP_OUTCOME_SUCCESS],
      ]);
      expect(again.ctx.lines.some((l) => l.includes('podman kube play'))).toBe(false);
      const now = (await containerState(env))!;
      expect([now.id, now.restartCount]).toEqual([container.id, container.restartCount]);
    }
    expect((await store.history(serviceId)).map((r) => [r.revision, r.status])).toEqual([[1, 'DEPLOYED']]);

    // RESTART restarts.
    const restarted = await run(job(env, svc, Action.ACTION_RESTART));
    expect(restarted.result.state).toBe(ServiceState.SERVICE_STATE_RESTARTED);

    // Its container stopped behind Stageline's back: the same spec is applied again.
    await runner.run('podman', ['pod', 'stop', '-t', '1', localPodName(env, 'web')]);
    const revived = await run(job(env, svc, Action.ACTION_DEPLOY, { image: pinned }));
    expect(revived.result).toMatchObject({ succeeded: true, revision: 2 });
    expect(
      revived.ctx.lines.some((l) => /revision 1 has this image and configuration but container .* is/.test(l)),
    ).toBe(true);
    expect(await get(revived.result.endpoints[0]!.url)).toEqual({ status: 200, body: 'steady' });

    // A changed env var is a new revision, applied.
    const changed = service(env, serviceId, { env: { GREETING: 'changed' } });
    const third = await run(job(env, changed, Action.ACTION_REDEPLOY, { image: pinned }));
    expect(third.result).toMatchObject({ succeeded: true, revision: 3 });
    expect(await get(third.result.endpoints[0]!.url)).toEqual({ status: 200, body: 'changed' });
  });

  it('serves the release history over gRPC (ListReleases newest first, GetRelease, NOT_FOUND)', async () => {
    const env = newEnvironment();
    const serviceId = newId();
    const first = await run(job(env, service(env, serviceId, { env: { GREETING: 'one' } })));
    const secondJob = job(env, service(env, serviceId, { env: { GREETING: 'two' } }));
    await run(secondJob);
    // As deploy serves it: TLS with its certificate; only control may call ReleaseService (mutual TLS).
    const security = testSecurity();
    const server = await startGrpcServer({
      address: '127.0.0.1:0',
      services: [releaseService(deps, log)],
      tls: security.files('deploy'),
      log,
    });
    const client = connect(deploy.ReleaseServiceClient, server.address, security.service('control'));
    try {
      const list = await callUnary(client, 'listReleases', deploy.ListReleasesRequest.fromPartial({ serviceId }));
      expect(list.releases.map((r) => [r.revision, r.status])).toEqual([
        [2, 'DEPLOYED'],
        [1, 'SUPERSEDED'],
      ]);
      const [latest] = list.releases;
      expect(latest).toMatchObject({ serviceId, image, deploymentId: expect.any(String) });
      expect(latest!.configHash).toMatch(/^[0-9a-f]{64}$/);
      // Stored keyed (it covers the secret values): not the bare SHA-256 a guessed secret could be checked against.
      const bare = renderChart(workloadFromJob(secondJob), 2).configHash;
      expect(latest!.configHash).not.toBe(bare);
      expect(latest!.configHash).toBe(secrets.fingerprint(bare).slice(-64));
      expect(latest!.chart).toContain(path.join('charts', env, serviceId, '2'));
      expect(latest!.createdAt).toBeInstanceOf(Date);

      const one = await callUnary(
        client,
        'getRelease',
        deploy.GetReleaseRequest.fromPartial({ serviceId, revision: 1 }),
      );
      expect(one.release).toMatchObject({ revision: 1, status: 'SUPERSEDED' });
      expect(one.release!.deploymentId).toBe(first.ctx.deploymentId);

      const missing = await callUnary(
        client,
        'getRelease',
        deploy.GetReleaseRequest.fromPartial({ serviceId, revision: 9 }),
      ).catch((e: unknown) => e);
      expect(isServiceError(missing) && missing.code).toBe(grpc.status.NOT_FOUND);
      const bad = await callUnary(client, 'listReleases', deploy.ListReleasesRequest.fromPartial({})).catch(
        (e: unknown) => e,
      );
      expect(isServiceError(bad) && bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    } finally {
      client.close();
      await server.shutdown();
    }
  });
});
