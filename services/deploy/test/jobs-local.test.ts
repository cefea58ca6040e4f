// Lifecycle jobs, cron jobs, container databases and past revisions on the local runtime: real podman, real
// PostgreSQL, the busybox example image (its EXAMPLE_SCRIPT runs as a job).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Database, newId, openDatabase } from '@stageline/db';
import { bus, control } from '@stageline/proto';
import { isSealed } from '@stageline/secrets';
import { useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PgCronTicks } from '../src/adapters/db/cron-ticks.ts';
import { entities } from '../src/adapters/db/entities.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { PgCredentialStore, PgHostPorts, PgReleaseStore } from '../src/adapters/db/release-store.ts';
import { FsChartStore } from '../src/adapters/fs/chart-store.ts';
import { LocalRuntime } from '../src/adapters/podman/local-runtime.ts';
import { Podman } from '../src/adapters/podman/podman.ts';
import { pickFreePort } from '../src/adapters/process/free-port.ts';
import { CronScheduler } from '../src/app/cron-scheduler.ts';
import { type DeployJobDeps, handleDeployJob } from '../src/app/deploy-job.ts';
import { keyedSerializer } from '../src/app/keyed-serializer.ts';
import { localContainerName } from '../src/domain/names.ts';
import { cleanEnvironment, log, recordingContext, runner, secrets } from './support.ts';

const { Action, ServiceKind, ServiceState, StepKind, StepOutcome } = control;
const EXAMPLE = process.env.EXAMPLE_IMAGE ?? '127.0.0.1:5001/examples/busybox:1.36';

const isolated = useIsolatedEnvironment();
let db: Database;
let stateDir: string;
let deps: DeployJobDeps;
let store: PgReleaseStore;
let local: LocalRuntime;
const podman = new Podman({ runner });
const environments: string[] = [];

beforeAll(async () => {
  db = await openDatabase({ url: isolated.databaseUrl, schema: 'deploy', entities, migrations, log });
  stateDir = await mkdtemp(path.join(os.tmpdir(), 'deploy-jobs-'));
  store = new PgReleaseStore({ db, secrets });
  const charts = new FsChartStore(path.join(stateDir, 'charts'), secrets);
  local = new LocalRuntime({
    podman,
    ports: new PgHostPorts({ db, pickFreePort }),
    charts,
    workDir: path.join(stateDir, 'local'),
    log,
  });
  deps = {
    releases: store,
    charts,
    credentials: new PgCredentialStore({ db, secrets }),
    runtime: (name) => (name === 'local' ? local : undefined),
    serialize: keyedSerializer(),
    fingerprint: (value) => secrets.fingerprint(value),
    now: () => new Date(),
  };
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

function jobService(
  environmentId: string,
  name: string,
  kind: control.ServiceKind,
  script: string,
  job: Partial<control.JobSource> = {},
): control.Service {
  return control.Service.fromPartial({
    id: newId(),
    environmentId,
    name,
    kind,
    source: {
      $case: 'job',
      value: control.JobSource.fromPartial({
        from: { $case: 'container', value: { image: '127.0.0.1:5001/examples/busybox', tag: '1.36', ports: [] } },
        onDeploy: kind === ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
        maxDurationSeconds: 60,
        ...job,
      }),
    },
    envVars: [{ key: 'EXAMPLE_SCRIPT', value: script, secret: false }],
  });
}

function deployJob(environmentId: string, svc: control.Service, extra: Partial<bus.DeployJob> = {}): bus.DeployJob {
  const deploymentId = newId();
  return bus.DeployJob.fromPartial({
    jobId: `${deploymentId}:${svc.id}:deploy:1`,
    deploymentId,
    environmentId,
    project: 'demo',
    environmentName: 'jobs',
    action: Action.ACTION_DEPLOY,
    service: svc,
    image: EXAMPLE,
    runtime: 'local',
    version: 'tag:1.36',
    attempt: 1,
    ...extra,
  });
}

async function run(j: bus.DeployJob) {
  const ctx = recordingContext({ jobId: j.jobId, deploymentId: j.deploymentId, serviceId: j.service?.id ?? '' });
  const result = await handleDeployJob(deps, j, ctx);
  return { result, ctx };
}

describe('lifecycle jobs on the local runtime', () => {
  it('runs to completion (EXECUTING step); what it writes to output.json comes back as outputs; nothing stays running', async () => {
    const env = newEnvironment();
    const svc = jobService(
      env,
      'seed',
      ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
      'echo "seeding for $STAGELINE_JOB_EVENT"; printf \'{"API_KEY":"k-%s","COUNT":3}\' "$GREETING_SUFFIX" > /stageline/output/output.json',
    );
    svc.envVars.push({ key: 'GREETING_SUFFIX', value: '42', secret: false });
    const { result, ctx } = await run(deployJob(env, svc));
    expect(result, result.message).toMatchObject({
      succeeded: true,
      state: ServiceState.SERVICE_STATE_DEPLOYED,
      revision: 1,
    });
    expect(result.outputs).toEqual({ API_KEY: 'k-42', COUNT: '3' });
    expect(ctx.steps.map((s) => [s.kind, s.finished?.outcome])).toEqual([
      [StepKind.STEP_KIND_EXECUTING, StepOutcome.STEP_OUTCOME_SUCCESS],
    ]);
    expect(ctx.lines.some((l) => l.includes('seed | seeding for DEPLOY'))).toBe(true);
    // The job's pod is gone once it ran.
    expect(await podman.podsWithLabel('stageline.io/service-id', svc.id)).toEqual([]);
    expect((await store.history(svc.id)).map((r) => [r.revision, r.status, r.kind])).toEqual([
      [1, 'DEPLOYED', 'LIFECYCLE_JOB'],
    ]);

    // Run again for the environment's STOP: a new revision, told which event it is.
    const again = await run(deployJob(env, svc, { trigger: Action.ACTION_STOP }));
    expect(again.result).toMatchObject({ succeeded: true, revision: 2 });
    expect(again.ctx.lines.some((l) => l.includes('seeding for STOP'))).toBe(true);
  });

  it('retries a failing job up to its retries, then fails with its exit code and last lines', async () => {
    const env = newEnvironment();
    const svc = jobService(
      env,
      'flaky',
      ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
      'echo "try"; echo "boom" >&2; exit 3',
      {
        maxRetries: 1,
      },
    );
    const { result, ctx } = await run(deployJob(env, svc));
    expect(result.state).toBe(ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR);
    expect(result.message).toMatch(/^job exited with code 3: .*boom.* \(after 2 attempts\)/);
    expect(ctx.lines.filter((l) => l.startsWith('running flaky-'))).toHaveLength(2);
    expect(ctx.steps[0]!.finished!.outcome).toBe(StepOutcome.STEP_OUTCOME_ERROR);
    expect(await podman.podsWithLabel('stageline.io/service-id', svc.id)).toEqual([]);
    expect((await store.history(svc.id)).map((r) => r.status)).toEqual(['FAILED']);
  });

  it('kills a job that runs longer than its max duration', async () => {
    const env = newEnvironment();
    const svc = jobService(env, 'slow', ServiceKind.SERVICE_KIND_LIFECYCLE_JOB, 'echo started; sleep 60', {
      maxDurationSeconds: 2,
    });
    const { result } = await run(deployJob(env, svc));
    expect(result.state).toBe(ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR);
    expect(result.message).toContain('ran longer than its max duration of 2s');
  });

  it('a job that writes something other than a JSON object fails', async () => {
    const env = newEnvironment();
    const svc = jobService(
      env,
      'bad-out',
      ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
      'echo "[1,2]" > /stageline/output/output.json',
    );
    const { result } = await run(deployJob(env, svc));
    expect(result.state).toBe(ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR);
    expect(result.message).toContain('output.json must hold a JSON object');
  });

  it('an output.json that is a symbolic link is refused, never followed to a file of the host', async () => {
    const hostDir = await mkdtemp(path.join(os.tmpdir(), 'host-secret-'));
    const hostFile = path.join(hostDir, 'secret.json');
    await writeFile(hostFile, '{"STOLEN":"host-secret"}');
    const env = newEnvironment();
    const svc = jobService(
      env,
      'linker',
      ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
      `ln -s ${hostFile} /stageline/output/output.json`,
    );
    const { result } = await run(deployJob(env, svc));
    expect(result.state).toBe(ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR);
    expect(result.message).toContain('output.json is a symbolic link: refused');
    expect(JSON.stringify(result)).not.toContain('host-secret');
    await rm(hostDir, { recursive: true, force: true });
  });
});

describe('past revisions and databases on the local runtime', () => {
  it('DEPLOY with revision:<n> deploys exactly that revision: its image and configuration, same config hash', async () => {
    const env = newEnvironment();
    const svc = (message: string) =>
      control.Service.fromPartial({
        id: serviceId,
        environmentId: env,
        name: 'web',
        kind: ServiceKind.SERVICE_KIND_CONTAINER,
        source: {
          $case: 'container',
          value: { image: '127.0.0.1:5001/examples/busybox', tag: '1.36', ports: [{ port: 8080, public: true }] },
        },
        envVars: [{ key: 'MESSAGE', value: message, secret: false }],
        readinessTimeoutSeconds: 30,
      });
    const serviceId = newId();
    const one = await run(deployJob(env, svc('first')));
    await run(deployJob(env, svc('second')));
    const url = one.result.endpoints[0]!.url;
    expect((await (await fetch(url)).text()).trim()).toBe('second');

    // The service's definition now says "third", but revision 1 is deployed as it was.
    const back = await run(deployJob(env, svc('third'), { version: 'revision:1', image: '' }));
    expect(back.result, back.result.message).toMatchObject({ succeeded: true, revision: 3 });
    expect((await (await fetch(url)).text()).trim()).toBe('first');
    const history = await store.history(serviceId);
    expect(history.map((r) => [r.revision, r.status])).toEqual([
      [3, 'DEPLOYED'],
      [2, 'SUPERSEDED'],
      [1, 'SUPERSEDED'],
    ]);
    expect(history[0]!.configHash).toBe(history[2]!.configHash);
    expect(history[0]!.image).toBe(history[2]!.image);
    expect(history[0]!.configHash).not.toBe(history[1]!.configHash);

    const missing = await run(deployJob(env, svc('x'), { version: 'revision:9', image: '' }));
    expect(missing.result.state).toBe(ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR);
    expect(missing.result.message).toBe('revision 9 does not exist');
  });

  it('a container database gets credentials (kept across revisions) and returns its connection details', async () => {
    const env = newEnvironment();
    const svc = control.Service.fromPartial({
      id: newId(),
      environmentId: env,
      name: 'orders-db',
      kind: ServiceKind.SERVICE_KIND_DATABASE,
      source: {
        $case: 'database',
        value: { engine: 1, version: '1.36', mode: 1, image: '127.0.0.1:5001/examples/busybox' },
      },
      // The example image stands in for postgres: it serves on the engine's port.
      envVars: [{ key: 'PORT', value: '5432', secret: false }],
      readinessTimeoutSeconds: 30,
    });
    const first = await run(deployJob(env, svc));
    expect(first.result, first.result.message).toMatchObject({ succeeded: true });
    const out = first.result.outputs;
    expect(out.ORDERS_DB_HOST).toBe('orders-db');
    expect(out.ORDERS_DB_PORT).toBe('5432');
    expect(out.ORDERS_DB_URL).toBe(
      `postgresql://${out.ORDERS_DB_USER}:${out.ORDERS_DB_PASSWORD}@orders-db:5432/${out.ORDERS_DB_DATABASE}`,
    );
    // The image got them as its own variables.
    const envOf = (await runner.run('podman', ['exec', localContainerName(env, 'orders-db'), 'env'])).stdout;
    expect(envOf).toContain(`POSTGRES_PASSWORD=${out.ORDERS_DB_PASSWORD}`);
    // At rest, the password and the recorded outputs are sealed (issue 20).
    const [credential] = await db
      .em()
      .execute<Array<{ password: string }>>('select password from database_credential where service_id = ?', [svc.id]);
    expect(isSealed(credential!.password)).toBe(true);
    expect(secrets.open(credential!.password)).toBe(out.ORDERS_DB_PASSWORD);
    const rows = JSON.stringify(await db.em().execute('select * from job_result where service_id = ?', [svc.id]));
    expect(rows).not.toContain(out.ORDERS_DB_PASSWORD);
    const second = await run(deployJob(env, svc));
    expect(second.result.outputs).toEqual(out);
    await run(deployJob(env, svc, { action: Action.ACTION_DELETE, image: '' }));
    // DELETE purged the password and the outputs handed on (issue 20).
    const left = JSON.stringify(await db.em().execute('select * from job_result where service_id = ?', [svc.id]));
    expect(left).not.toContain('sl:v1:');
    expect(await db.em().execute('select * from database_credential where service_id = ?', [svc.id])).toEqual([]);
    const third = await run(deployJob(env, svc));
    // DELETE removed the data and with it the credentials: new ones.
    expect(third.result.outputs.ORDERS_DB_PASSWORD).not.toBe(out.ORDERS_DB_PASSWORD);
  });
});

describe('cron jobs on the local runtime (the deploy service schedules them)', () => {
  it('runs each tick exactly once across schedulers, for real, with its log; a new scheduler resumes after a restart', async () => {
    const env = newEnvironment();
    const svc = jobService(env, 'tick', ServiceKind.SERVICE_KIND_CRON_JOB, 'echo "tick at $(date -u +%H:%M:%S)"', {
      schedule: '* * * * *',
    });
    const deployed = await run(deployJob(env, svc));
    expect(deployed.result, deployed.result.message).toMatchObject({
      succeeded: true,
      state: ServiceState.SERVICE_STATE_DEPLOYED,
    });
    expect(deployed.result.message).toContain('scheduled: "* * * * *" (UTC)');
    const release = (await store.history(svc.id))[0]!;
    expect(release).toMatchObject({ kind: 'CRON_JOB', schedule: '* * * * *', status: 'DEPLOYED' });

    const ticks = new PgCronTicks({ db });
    // The schedule's clock, driven by the test: the next minute after the deploy, then the one after.
    let clock = new Date(Math.ceil((release.createdAt.getTime() + 1) / 60_000) * 60_000 + 5_000);
    const scheduler = (owner: string) =>
      new CronScheduler({ releases: store, ticks, executor: local, owner, clock: () => clock, log, pollMs: 60_000 });
    const a = scheduler('a');
    const b = scheduler('b');
    await Promise.all([a.poll(), b.poll(), a.poll(), b.poll()]);
    await Promise.all([a.idle(), b.idle()]);
    let runs = await ticks.list(svc.id, 10);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ status: 'SUCCEEDED', exitCode: 0, revision: 1 });
    expect(runs[0]!.tick.getTime()).toBe(Math.floor(clock.getTime() / 60_000) * 60_000);
    expect(runs[0]!.log.some((l) => /tick \| tick at \d\d:\d\d:\d\d/.test(l))).toBe(true);

    // Both "processes" stop; a new one starts: the tick already run is not run again, the next one is.
    await Promise.all([a.stop(), b.stop()]);
    const c = scheduler('c');
    await c.poll();
    await c.idle();
    expect(await ticks.list(svc.id, 10)).toHaveLength(1);
    clock = new Date(clock.getTime() + 60_000);
    await Promise.all([c.poll(), c.poll()]);
    await c.idle();
    runs = await ticks.list(svc.id, 10);
    expect(runs.map((r) => [r.status, r.owner])).toEqual([
      ['SUCCEEDED', 'c'],
      ['SUCCEEDED', expect.stringMatching(/^[ab]$/)],
    ]);

    // STOP suspends the schedule: nothing runs on the next tick; DELETE removes it.
    const stopped = await run(deployJob(env, svc, { action: Action.ACTION_STOP, image: '' }));
    expect(stopped.result.state).toBe(ServiceState.SERVICE_STATE_STOPPED);
    clock = new Date(clock.getTime() + 60_000);
    await c.poll();
    await c.idle();
    expect(await ticks.list(svc.id, 10)).toHaveLength(2);
    await c.stop();
  });

  it('records a failing run with its exit code', async () => {
    const env = newEnvironment();
    const svc = jobService(env, 'fails', ServiceKind.SERVICE_KIND_CRON_JOB, 'echo "no luck" >&2; exit 7', {
      schedule: '*/1 * * * *',
    });
    await run(deployJob(env, svc));
    const release = (await store.history(svc.id))[0]!;
    const ticks = new PgCronTicks({ db });
    const clock = new Date(Math.ceil((release.createdAt.getTime() + 1) / 60_000) * 60_000);
    const s = new CronScheduler({
      releases: store,
      ticks,
      executor: local,
      owner: 'x',
      clock: () => clock,
      log,
      pollMs: 60_000,
    });
    await s.poll();
    await s.idle();
    const [only] = await ticks.list(svc.id, 10);
    expect(only).toMatchObject({ status: 'FAILED', exitCode: 7 });
    expect(only!.message).toContain('no luck');
    await s.stop();
  });
});
