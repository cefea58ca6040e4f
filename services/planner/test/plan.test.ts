import { describe, expect, it } from 'vitest';
import type { ActionName, EnvironmentFacts, RunRequest, ServiceFacts, ServiceRun } from '../src/domain/model.ts';
import { standingAfterRun } from '../src/domain/outcomes.ts';
import { expectedDurations, expectedSteps, planRun } from '../src/domain/plan.ts';
import { advance, applyJobFact, requestCancel } from '../src/domain/schedule.ts';

const deployed = { hasResources: true, stopped: false, version: 'tag:v1', image: 'mirror/x:v1@sha256:1' };
const never = { hasResources: false, stopped: false, version: '', image: '' };

function svc(id: string, stage: number, extra: Partial<ServiceFacts> = {}): ServiceFacts {
  return {
    id,
    name: id,
    kind: 'CONTAINER',
    stageId: `s${stage}`,
    skipped: false,
    build: 'MIRROR',
    configuredVersion: 'tag:v2',
    current: deployed,
    ...extra,
  };
}

function env(services: ServiceFacts[], extra: Partial<EnvironmentFacts> = {}): EnvironmentFacts {
  return {
    environmentId: 'e',
    stages: [0, 1, 2].map((i) => ({ id: `s${i}`, name: `stage ${i}` })),
    services,
    maxParallelBuilds: 7,
    maxParallelDeploys: 7,
    mode: 'PIPELINED',
    ...extra,
  };
}

const req = (action: ActionName, extra: Partial<RunRequest> = {}): RunRequest => ({
  action,
  serviceIds: [],
  version: '',
  forceBuild: false,
  ...extra,
});
const summary = (services: { name: string; status: string; message: string }[]) =>
  services.map((s) => [s.name, s.status, s.message]);

describe('planning a run (the Action enum in types.proto)', () => {
  const services = [svc('a', 0), svc('b', 1, { skipped: true }), svc('c', 2, { current: never })];

  it('environment DEPLOY skips skipped services; DELETE takes them too', () => {
    expect(summary(planRun('r', env(services), req('DEPLOY')).services)).toEqual([
      ['a', 'QUEUED', ''],
      ['b', 'SKIPPED', 'skipped'],
      ['c', 'QUEUED', ''],
    ]);
    expect(summary(planRun('r', env(services), req('DELETE')).services)).toEqual([
      ['a', 'DELETE_QUEUED', ''],
      ['b', 'DELETE_QUEUED', ''],
      ['c', 'SKIPPED', 'never deployed'],
    ]);
  });

  it('STOP and DELETE walk the stages in reverse; RESTART skips what never deployed and builds nothing', () => {
    expect(planRun('r', env(services), req('STOP')).executionOrder).toEqual(['s2', 's1', 's0']);
    expect(planRun('r', env(services), req('DELETE')).executionOrder).toEqual(['s2', 's1', 's0']);
    const restart = planRun('r', env(services), req('RESTART'));
    expect(restart.executionOrder).toEqual(['s0', 's1', 's2']);
    expect(summary(restart.services)).toEqual([
      ['a', 'QUEUED', ''],
      ['b', 'SKIPPED', 'skipped'],
      ['c', 'SKIPPED', 'never deployed'],
    ]);
    expect(restart.services.every((s) => s.build === null)).toBe(true);
  });

  it('STOP skips services already stopped', () => {
    const stopped = svc('d', 0, { current: { ...deployed, stopped: true } });
    expect(summary(planRun('r', env([stopped]), req('STOP')).services)).toEqual([['d', 'SKIPPED', 'already stopped']]);
  });

  it('a service-level action works on a skipped service and lists only its stage', () => {
    const run = planRun('r', env(services), req('DEPLOY', { serviceIds: ['b'], version: 'tag:v9' }));
    expect(summary(run.services)).toEqual([['b', 'QUEUED', '']]);
    expect(run.services[0]?.version).toBe('tag:v9');
    expect(run.stages.map((s) => s.stageId)).toEqual(['s1']);
  });

  it('REDEPLOY keeps each service at the version it runs; ROLLBACK deploys the target images without building', () => {
    const redeploy = planRun('r', env(services), req('REDEPLOY'));
    expect(redeploy.services.map((s) => s.version)).toEqual(['tag:v1', '', 'tag:v2']);
    const rollback = planRun(
      'r',
      env(services),
      req('ROLLBACK', { rollbackTo: { a: { version: 'tag:v0', image: 'mirror/a:v0' } } }),
    );
    expect(summary(rollback.services)).toEqual([
      ['a', 'QUEUED', ''],
      ['b', 'SKIPPED', 'skipped'],
      ['c', 'SKIPPED', 'not part of the run rolled back to'],
    ]);
    expect(rollback.services[0]).toMatchObject({ build: null, image: 'mirror/a:v0' });
  });
});

describe('failure and cancel (DEPLOYMENT_STATUS_FAILED, CancelDeployment)', () => {
  const finish = (state: ReturnType<typeof planRun>, jobId: string, succeeded: boolean, seq = 1) =>
    applyJobFact(state, {
      type: 'jobFinished',
      jobId,
      sequence: seq,
      succeeded,
      state: 'QUEUED',
      message: succeeded ? '' : 'image not found',
      image: 'mirror/x@sha256:2',
      endpoints: [],
      at: 5,
    });

  it('a build error in stage 2 fails the run: stage 1 partly deployed DONE, stage 2 ERROR, stage 3 CANCELED', () => {
    const facts = env([svc('a', 0), svc('b', 1), svc('c', 2)]);
    let { state, decisions } = advance(planRun('r', facts, req('DEPLOY')), 0);
    // PIPELINED: all three mirrors start at once.
    expect(decisions.filter((d) => d.type === 'dispatch').map((d) => d.type === 'dispatch' && d.serviceId)).toEqual([
      'a',
      'b',
      'c',
    ]);
    state = finish(state, 'r:a:build:1', true);
    ({ state, decisions } = advance(state, 1));
    expect(decisions).toEqual([expect.objectContaining({ type: 'dispatch', role: 'deploy', serviceId: 'a' })]);
    state = finish(state, 'r:b:build:1', false);
    ({ state, decisions } = advance(state, 2));
    // Nothing new starts; in-flight work (a's deploy, c's mirror) finishes.
    expect(decisions).toEqual([]);
    state = finish(state, 'r:a:deploy:1', true);
    state = finish(state, 'r:c:build:1', true);
    ({ state, decisions } = advance(state, 3));
    expect(decisions).toEqual([{ type: 'finished', status: 'FAILED' }]);
    expect(summary(state.services)).toEqual([
      ['a', 'DEPLOYED', ''],
      ['b', 'BUILD_ERROR', 'image not found'],
      ['c', 'CANCELED', ''],
    ]);
    expect(state.stages.map((s) => s.status)).toEqual(['DONE', 'ERROR', 'CANCELED']);
    expect(state.message).toBe('b: image not found');
  });

  it('cancel: nothing new starts, in-flight jobs are told to stop, the run ends CANCELED', () => {
    const facts = env([svc('a', 0), svc('b', 1)], { maxParallelBuilds: 1 });
    let { state } = advance(planRun('r', facts, req('DEPLOY')), 0);
    const canceled = requestCancel(state);
    expect(canceled.decisions).toEqual([{ type: 'cancelJobs' }]);
    state = applyJobFact(canceled.state, {
      type: 'jobFinished',
      jobId: 'r:a:build:1',
      sequence: 1,
      succeeded: false,
      state: 'CANCELED',
      message: 'canceled',
      image: '',
      endpoints: [],
      at: 1,
    });
    const end = advance(state, 2);
    expect(end.decisions).toEqual([{ type: 'finished', status: 'CANCELED' }]);
    expect(summary(end.state.services)).toEqual([
      ['a', 'CANCELED', 'canceled'],
      ['b', 'CANCELED', ''],
    ]);
    expect(end.state.stages.map((s) => s.status)).toEqual(['CANCELED', 'CANCELED', 'SKIPPED']);
  });
});

describe('values for later stages', () => {
  it('injects what earlier stages produced in this run over what they produced before; nothing from later stages', async () => {
    const { injectedEnv } = await import('../src/domain/schedule.ts');
    const facts = env([svc('job', 0), svc('api', 1), svc('late', 2)]);
    let { state } = advance(planRun('r', facts, req('DEPLOY', { serviceIds: [] })), 0);
    const persisted = new Map([
      ['job', { API_KEY: 'old', KEPT: 'yes' }],
      ['late', { FROM_LATER: 'no' }],
    ]);
    state = applyJobFact(state, {
      type: 'jobFinished',
      jobId: 'r:job:build:1',
      sequence: 1,
      succeeded: true,
      state: 'QUEUED',
      message: '',
      image: 'i',
      endpoints: [],
      at: 1,
    });
    ({ state } = advance(state, 1));
    state = applyJobFact(state, {
      type: 'jobFinished',
      jobId: 'r:job:deploy:1',
      sequence: 1,
      succeeded: true,
      state: 'DEPLOYED',
      message: '',
      image: '',
      endpoints: [],
      outputs: { API_KEY: 'new' },
      at: 2,
    });
    expect(injectedEnv(state, 'api', persisted)).toEqual({ API_KEY: 'new', KEPT: 'yes' });
    expect(injectedEnv(state, 'job', persisted)).toEqual({});
  });

  it('a DEPLOY at a past revision builds nothing', () => {
    const run = planRun('r', env([svc('a', 0)]), req('DEPLOY', { serviceIds: ['a'], version: 'revision:2' }));
    expect(run.services[0]).toMatchObject({ build: null, version: 'revision:2' });
  });
});

describe('lifecycle and cron jobs (JobSource.on_*)', () => {
  const job = (id: string, stage: number, on: { deploy: boolean; stop: boolean; delete: boolean }, extra = {}) =>
    svc(id, stage, { kind: 'LIFECYCLE_JOB', runsOn: on, ...extra });
  const slotOf = (run: ReturnType<typeof planRun>, id: string) => run.services.find((s) => s.serviceId === id)!;

  it('a job runs on the events it is configured for (a DEPLOY job with the trigger) and is SKIPPED otherwise', () => {
    const services = [
      job('on-deploy', 0, { deploy: true, stop: false, delete: false }),
      job('on-stop', 0, { deploy: false, stop: true, delete: false }),
      job('on-delete', 1, { deploy: false, stop: false, delete: true }),
      svc('api', 2),
    ];
    const deploy = planRun('r', env(services), req('DEPLOY'));
    expect(summary(deploy.services)).toEqual([
      ['on-deploy', 'QUEUED', ''],
      ['on-stop', 'SKIPPED', 'runs on STOP or DELETE only, not on DEPLOY'],
      ['on-delete', 'SKIPPED', 'runs on STOP or DELETE only, not on DEPLOY'],
      ['api', 'QUEUED', ''],
    ]);
    expect(slotOf(deploy, 'on-deploy').deploy).toMatchObject({ what: 'DEPLOY' });
    expect(slotOf(deploy, 'on-deploy').deploy?.trigger).toBeUndefined();

    const stop = planRun('r', env(services), req('STOP'));
    expect(summary(stop.services)).toEqual([
      ['on-deploy', 'SKIPPED', 'not configured to run on STOP'],
      ['on-stop', 'QUEUED', ''],
      ['on-delete', 'SKIPPED', 'not configured to run on STOP'],
      ['api', 'STOP_QUEUED', ''],
    ]);
    // It runs (DEPLOY, EXECUTING) with the image it last ran: no build.
    expect(slotOf(stop, 'on-stop')).toMatchObject({
      build: null,
      image: deployed.image,
      deploy: { what: 'DEPLOY', trigger: 'STOP' },
    });

    const del = planRun('r', env(services), req('DELETE'));
    expect(summary(del.services)).toEqual([
      ['on-deploy', 'DELETE_QUEUED', ''],
      ['on-stop', 'DELETE_QUEUED', ''],
      ['on-delete', 'QUEUED', ''],
      ['api', 'DELETE_QUEUED', ''],
    ]);
    expect(slotOf(del, 'on-delete').deploy).toMatchObject({ what: 'DEPLOY', trigger: 'DELETE' });
    // Still stage by stage in reverse: the DELETE job of stage 1 runs before stage 0 is removed.
    expect(del.executionOrder).toEqual(['s2', 's1', 's0']);

    expect(summary(planRun('r', env(services), req('RESTART')).services).slice(0, 3)).toEqual([
      ['on-deploy', 'SKIPPED', 'a lifecycle job runs on DEPLOY, STOP or DELETE, never on RESTART'],
      ['on-stop', 'SKIPPED', 'a lifecycle job runs on DEPLOY, STOP or DELETE, never on RESTART'],
      ['on-delete', 'SKIPPED', 'a lifecycle job runs on DEPLOY, STOP or DELETE, never on RESTART'],
    ]);
  });

  it('a job that never ran is built at its configured version before it runs on STOP; it shows EXECUTING', () => {
    const fresh = job('cleanup', 0, { deploy: false, stop: true, delete: false }, { current: never });
    let { state, decisions } = advance(planRun('r', env([fresh]), req('STOP')), 0);
    expect(decisions).toEqual([
      { type: 'dispatch', role: 'build', serviceId: 'cleanup', jobId: 'r:cleanup:build:1', attempt: 1, what: 'MIRROR' },
    ]);
    expect(state.services[0]!.version).toBe('tag:v2');
    state = applyJobFact(state, {
      type: 'jobFinished',
      jobId: 'r:cleanup:build:1',
      sequence: 1,
      succeeded: true,
      state: 'QUEUED',
      message: '',
      image: 'mirror/cleanup:v2@sha256:2',
      endpoints: [],
      at: 1,
    });
    ({ state, decisions } = advance(state, 1));
    expect(decisions.map((d) => d.type === 'dispatch' && [d.role, d.what])).toEqual([['deploy', 'DEPLOY']]);
    expect(state.services[0]!.status).toBe('EXECUTING');
    expect(state.services[0]!.deploy?.trigger).toBe('STOP');
  });

  it('a failed job fails its stage and the run; later stages never start', () => {
    const services = [job('migrate', 0, { deploy: true, stop: false, delete: false }), svc('api', 1, { build: null })];
    let { state } = advance(planRun('r', env(services), req('DEPLOY')), 0);
    state = applyJobFact(state, {
      type: 'jobFinished',
      jobId: 'r:migrate:build:1',
      sequence: 1,
      succeeded: true,
      state: 'QUEUED',
      message: '',
      image: 'i',
      endpoints: [],
      at: 1,
    });
    ({ state } = advance(state, 1));
    state = applyJobFact(state, {
      type: 'jobFinished',
      jobId: 'r:migrate:deploy:1',
      sequence: 1,
      succeeded: false,
      state: 'DEPLOYMENT_ERROR',
      message: 'job exited with code 1',
      image: '',
      endpoints: [],
      at: 2,
    });
    const { state: end, decisions } = advance(state, 2);
    expect(decisions.at(-1)).toEqual({ type: 'finished', status: 'FAILED' });
    expect(end.stages.map((s) => s.status)).toEqual(['ERROR', 'CANCELED', 'SKIPPED']);
    expect(end.services.find((s) => s.serviceId === 'api')!.deploy?.phase).toBe('PENDING');
  });

  it('a cron job is deployed (scheduled) on DEPLOY, stopped (suspended) on STOP, like any service', () => {
    const cron = svc('nightly', 0, { kind: 'CRON_JOB' });
    expect(planRun('r', env([cron]), req('DEPLOY')).services[0]).toMatchObject({
      status: 'QUEUED',
      deploy: { what: 'DEPLOY' },
    });
    expect(planRun('r', env([cron]), req('STOP')).services[0]).toMatchObject({
      status: 'STOP_QUEUED',
      deploy: { what: 'STOP' },
    });
  });
});

describe('dispatch order: the longest jobs first', () => {
  const dispatched = (decisions: ReturnType<typeof advance>['decisions']) =>
    decisions.flatMap((d) => (d.type === 'dispatch' ? [d.serviceId] : []));

  it('fills the slots with a stage’s longest builds and deploys, known from earlier runs; unknown last', () => {
    const facts = env(
      [
        svc('short', 0, { expectedMs: { build: 100, deploy: 100 } }),
        svc('unknown', 0),
        svc('long', 0, { expectedMs: { build: 900, deploy: 50 } }),
        svc('middle', 0, { expectedMs: { build: 500, deploy: 700 } }),
      ],
      { maxParallelBuilds: 2, maxParallelDeploys: 1 },
    );
    let { state, decisions } = advance(planRun('r', facts, req('DEPLOY')), 0);
    expect(dispatched(decisions)).toEqual(['long', 'middle']);
    const finish = (jobId: string) =>
      applyJobFact(state, {
        type: 'jobFinished',
        jobId,
        sequence: 1,
        succeeded: true,
        state: 'MIRRORING',
        message: '',
        image: 'mirror/x@sha256:2',
        endpoints: [],
        at: 1,
      });
    state = finish('r:long:build:1');
    state = finish('r:middle:build:1');
    ({ state, decisions } = advance(state, 1));
    // Two build slots free: the short one, then the one never seen; one deploy slot: the longer deploy.
    expect(dispatched(decisions)).toEqual(['short', 'unknown', 'middle']);
  });

  it('learns durations from earlier runs, the newest first, without the queueing before the work', () => {
    const step = (kind: string, startedAt: number, finishedAt: number | null) => ({
      kind: kind as never,
      startedAt,
      finishedAt,
      outcome: null,
      message: '',
    });
    const run = (steps: Record<string, ReturnType<typeof step>[]>) => ({
      services: Object.entries(steps).map(([id, st]) => ({ serviceId: id, steps: st }) as never),
    });
    const newest = run({
      api: [step('BUILD_QUEUEING', 0, 50), step('GIT_CLONE', 50, 150), step('BUILD', 150, 1150)],
      web: [step('MIRROR_IMAGE', 0, 30), step('DEPLOYMENT_QUEUEING', 30, 40), step('DEPLOYMENT', 40, 2040)],
    });
    const older = run({
      api: [step('BUILD', 0, 9999), step('DEPLOYMENT', 0, 800)],
      web: [step('DEPLOYMENT', 0, 5)],
      gone: [step('DEPLOYMENT', 0, null)],
    });
    expect(Object.fromEntries(expectedDurations([newest, older]))).toEqual({
      api: { build: 1100, deploy: 800 },
      web: { build: 30, deploy: 2000 },
    });
  });
});

describe('expected steps (ServiceRun.expected_steps: what --watch draws progress from)', () => {
  it('are the steps of the jobs a run plans for each service, in order; none for a skipped one', () => {
    const services = [
      svc('git', 0, { build: 'GIT', configuredVersion: 'commit:abc1234' }),
      svc('img', 0),
      svc('db', 1, { kind: 'DATABASE', build: null }),
      svc('job', 1, { kind: 'LIFECYCLE_JOB' }),
      svc('off', 2, { skipped: true }),
    ];
    const steps = (action: ActionName) =>
      planRun('r', env(services), req(action)).services.map((s) => [s.name, expectedSteps(s)]);
    expect(steps('DEPLOY')).toEqual([
      ['git', ['GIT_CLONE', 'BUILD', 'DEPLOYMENT']],
      ['img', ['MIRROR_IMAGE', 'DEPLOYMENT']],
      ['db', ['DEPLOYMENT']],
      ['job', ['MIRROR_IMAGE', 'EXECUTING']],
      ['off', []],
    ]);
    expect(steps('STOP').find(([name]) => name === 'img')).toEqual(['img', ['STOP']]);
    expect(steps('RESTART').find(([name]) => name === 'git')).toEqual(['git', ['RESTART']]);
  });
});

describe("a service's standing after a run (the one has-resources rule)", () => {
  const before = {
    hasResources: true,
    stopped: false,
    version: 'tag:v1',
    image: 'img:v1',
    state: 'DEPLOYED',
    outputs: { A: '1' },
  };
  const run = (extra: Partial<ServiceRun>): ServiceRun => ({
    serviceId: 'x',
    name: 'x',
    kind: 'CONTAINER',
    stageId: 's0',
    status: 'DEPLOYED',
    version: 'tag:v2',
    image: 'img:v2',
    build: null,
    deploy: null,
    steps: [],
    finished: true,
    failed: false,
    message: '',
    endpoints: [],
    outputs: { A: '2' },
    ...extra,
  });
  const job = (trigger: 'STOP' | 'DELETE') =>
    run({
      kind: 'LIFECYCLE_JOB',
      deploy: { role: 'deploy', what: 'DEPLOY', phase: 'DONE', jobId: 'j', attempt: 1, lastSequence: 1, trigger },
    });

  it('a lifecycle job run for DELETE leaves no resources though it ends DEPLOYED; for STOP, stopped ones', () => {
    expect(standingAfterRun(before, job('DELETE'))).toMatchObject({ hasResources: false, version: '', outputs: {} });
    expect(standingAfterRun(before, job('STOP'))).toMatchObject({
      hasResources: true,
      stopped: true,
      version: 'tag:v2',
    });
  });

  it('a deploy records what runs and its outputs; DELETE clears them; skipped and canceled change nothing', () => {
    expect(standingAfterRun({ ...before, hasResources: false }, run({}))).toMatchObject({
      hasResources: true,
      version: 'tag:v2',
      image: 'img:v2',
      outputs: { A: '2' },
    });
    expect(standingAfterRun(before, run({ status: 'DELETED' }))).toMatchObject({ hasResources: false, image: '' });
    expect(standingAfterRun(before, run({ status: 'SKIPPED' }))).toBe(before);
    expect(standingAfterRun(before, run({ status: 'CANCELED' }))).toBe(before);
  });

  it('a failed deploy may have left resources behind; a failed build leaves things as they were', () => {
    const never = { ...before, hasResources: false };
    const failedDeploy = run({
      status: 'DEPLOYMENT_ERROR',
      deploy: { role: 'deploy', what: 'DEPLOY', phase: 'FAILED', jobId: 'j', attempt: 1, lastSequence: 1 },
    });
    expect(standingAfterRun(never, failedDeploy)).toMatchObject({ hasResources: true, state: 'DEPLOYMENT_ERROR' });
    expect(standingAfterRun(never, run({ status: 'BUILD_ERROR' }))).toMatchObject({
      hasResources: false,
      state: 'BUILD_ERROR',
    });
  });
});
