import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { type DeepPartial, environmentEvents, useControl } from './harness.ts';

const { ServiceKind } = control;
const ctl = useControl();

const create = (name: string, project = 'shop') =>
  callUnary(ctl.environments, 'createEnvironment', control.CreateEnvironmentRequest.fromPartial({ project, name }));

const add = (environmentId: string, service: DeepPartial<control.Service>) =>
  callUnary(ctl.environments, 'addService', control.AddServiceRequest.fromPartial({ environmentId, service })).then(
    (r) => r.service!,
  );

/** One service of each kind, as a client would send them. */
const servicesOfEachKind: Record<string, DeepPartial<control.Service>> = {
  db: {
    name: 'db',
    kind: ServiceKind.SERVICE_KIND_DATABASE,
    source: { $case: 'database', value: { engine: control.DatabaseEngine.DATABASE_ENGINE_POSTGRESQL } },
  },
  migrate: {
    name: 'migrate',
    kind: ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
    source: {
      $case: 'job',
      value: { from: { $case: 'container', value: { image: 'ghcr.io/acme/migrate', tag: 'v3' } }, onDeploy: true },
    },
  },
  nightly: {
    name: 'nightly',
    kind: ServiceKind.SERVICE_KIND_CRON_JOB,
    source: {
      $case: 'job',
      value: { from: { $case: 'container', value: { image: 'ghcr.io/acme/report' } }, schedule: '0 3 * * *' },
    },
  },
  web: {
    name: 'web',
    kind: ServiceKind.SERVICE_KIND_CONTAINER,
    source: {
      $case: 'container',
      value: { image: 'docker.io/library/nginx', tag: '1.27', ports: [{ port: 80, public: true }] },
    },
    envVars: [
      { key: 'MODE', value: 'production' },
      { key: 'API_TOKEN', value: 's3cr3t', secret: true },
    ],
  },
  api: {
    name: 'api',
    kind: ServiceKind.SERVICE_KIND_APPLICATION,
    source: {
      $case: 'application',
      value: { gitUrl: 'https://git.example.com/acme/api.git', branch: 'main', ports: [{ port: 8080 }] },
    },
  },
};

describe('environments and their pipeline over gRPC', () => {
  it('creates an environment with the four default stages in order and default settings', async () => {
    const { environment, pipeline } = await create('staging');
    expect(environment?.settings).toMatchObject({
      maxParallelBuilds: 7,
      maxParallelDeploys: 7,
      schedulingMode: control.SchedulingMode.SCHEDULING_MODE_PIPELINED,
      mirrorMode: control.MirrorMode.MIRROR_MODE_SERVICE,
      namespace: 'shop-staging',
    });
    expect(environment?.runtime).toBe('local');
    expect(environment?.status).toBe(control.EnvironmentStatus.ENVIRONMENT_STATUS_NEVER_DEPLOYED);
    expect(pipeline?.stages.map((s) => [s.order, s.name])).toEqual([
      [0, 'DEFAULT DATABASE'],
      [1, 'DEFAULT JOB'],
      [2, 'DEFAULT CONTAINER'],
      [3, 'DEFAULT APPLICATION'],
    ]);
    const got = await callUnary(ctl.environments, 'getEnvironment', { environmentId: environment!.id });
    expect(got.pipeline).toEqual(pipeline);
  });

  it('puts a service of each kind in its default stage, reorders, skips, clones as preview, and publishes every change', async () => {
    const { environment, pipeline } = await create('production');
    const envId = environment!.id;
    const stageIds = pipeline!.stages.map((s) => s.id);
    // One after another: services of a stage are listed in the order they were added.
    const added: Record<string, control.Service> = {};
    for (const [k, s] of Object.entries(servicesOfEachKind)) added[k] = await add(envId, s);
    expect(added.db!.stageId).toBe(stageIds[0]);
    expect(added.migrate!.stageId).toBe(stageIds[1]);
    expect(added.nightly!.stageId).toBe(stageIds[1]);
    expect(added.web!.stageId).toBe(stageIds[2]);
    expect(added.api!.stageId).toBe(stageIds[3]);
    // Defaults filled in; the secret is write-only.
    expect(added.api!.buildResources).toEqual({ cpuMillis: 4000, memoryMib: 4096 });
    expect(added.web!.envVars).toEqual([
      { key: 'MODE', value: 'production', secret: false },
      { key: 'API_TOKEN', value: '', secret: true },
    ]);

    // Reorder: the application stage first, a new stage in the middle, the api moved into it.
    await callUnary(ctl.pipelines, 'moveStage', { environmentId: envId, stageId: stageIds[3]!, position: 0 });
    const created = await callUnary(
      ctl.pipelines,
      'createStage',
      control.CreateStageRequest.fromPartial({ environmentId: envId, name: 'smoke tests', position: 2 }),
    );
    const smoke = created.pipeline!.stages.find((s) => s.name === 'smoke tests')!;
    await callUnary(ctl.pipelines, 'moveService', {
      environmentId: envId,
      serviceId: added.api!.id,
      stageId: smoke.id,
    });
    await callUnary(ctl.pipelines, 'setServiceSkipped', {
      environmentId: envId,
      serviceId: added.nightly!.id,
      skipped: true,
    });
    const { pipeline: after } = await callUnary(ctl.pipelines, 'getPipeline', { environmentId: envId });
    expect(after!.stages.map((s) => [s.order, s.name, s.serviceIds.length])).toEqual([
      [0, 'DEFAULT APPLICATION', 0],
      [1, 'DEFAULT DATABASE', 1],
      [2, 'smoke tests', 1],
      [3, 'DEFAULT JOB', 2],
      [4, 'DEFAULT CONTAINER', 1],
    ]);

    // Clone as preview: same stages, same placement, skipped flags inherited, new ids.
    const clone = await callUnary(ctl.environments, 'cloneEnvironment', {
      sourceEnvironmentId: envId,
      name: 'pr-42',
      preview: true,
    });
    expect(clone.environment).toMatchObject({ preview: true, clonedFromId: envId });
    expect(clone.environment!.settings!.namespace).toBe('shop-pr-42');
    expect(clone.pipeline!.stages.map((s) => [s.name, s.serviceIds.length])).toEqual(
      after!.stages.map((s) => [s.name, s.serviceIds.length]),
    );
    const cloned = await callUnary(ctl.environments, 'listServices', { environmentId: clone.environment!.id });
    expect(cloned.services.map((s) => [s.name, s.skipped])).toEqual([
      ['db', false],
      ['api', false],
      ['migrate', false],
      ['nightly', true],
      ['web', false],
    ]);
    expect(cloned.services.every((s) => !Object.values(added).some((a) => a.id === s.id))).toBe(true);

    // Every change went through the outbox onto JetStream, in order.
    const events = await environmentEvents(ctl.env.natsUrl, ctl.env.busPrefix, envId, 10);
    expect(events.map((e) => e.event?.$case)).toEqual([
      'environmentCreated',
      ...Array(5).fill('serviceAdded'),
      'stageMoved',
      'stageCreated',
      'serviceMoved',
      'serviceSkippedChanged',
    ]);
    const cloneEvents = await environmentEvents(ctl.env.natsUrl, ctl.env.busPrefix, clone.environment!.id, 1);
    expect(cloneEvents[0]?.event).toMatchObject({ $case: 'environmentCreated' });
  });

  it('pages environments of a project, oldest first', async () => {
    const names = ['p-a', 'p-b', 'p-c'];
    for (const name of names) await create(name, 'paging');
    const first = await callUnary(ctl.environments, 'listEnvironments', {
      project: 'paging',
      pageSize: 2,
      pageToken: '',
    });
    const second = await callUnary(ctl.environments, 'listEnvironments', {
      project: 'paging',
      pageSize: 2,
      pageToken: first.nextPageToken,
    });
    expect(first.environments.map((e) => e.name)).toEqual(['p-a', 'p-b']);
    expect(second.environments.map((e) => e.name)).toEqual(['p-c']);
    expect(second.nextPageToken).toBe('');
  });

  it('updates settings, and an unchanged UpdateService changes nothing and emits nothing', async () => {
    const { environment } = await create('settings');
    const envId = environment!.id;
    const updated = await callUnary(
      ctl.environments,
      'updateEnvironment',
      control.UpdateEnvironmentRequest.fromPartial({
        environmentId: envId,
        settings: { maxParallelBuilds: 3, schedulingMode: control.SchedulingMode.SCHEDULING_MODE_STRICT },
      }),
    );
    expect(updated.environment!.settings).toMatchObject({
      maxParallelBuilds: 3,
      maxParallelDeploys: 7,
      schedulingMode: control.SchedulingMode.SCHEDULING_MODE_STRICT,
    });
    const web = await add(envId, servicesOfEachKind.web!);
    // Sent back exactly as read (secret empty): nothing changes, the secret is kept.
    const same = await callUnary(ctl.environments, 'updateService', { environmentId: envId, service: web });
    expect(same.service!.updatedAt).toEqual(web.updatedAt);
    const changed = await callUnary(ctl.environments, 'updateService', {
      environmentId: envId,
      service: { ...web, envVars: [...web.envVars, { key: 'EXTRA', value: '1', secret: false }] },
    });
    expect(changed.service!.envVars.map((v) => v.key)).toEqual(['MODE', 'API_TOKEN', 'EXTRA']);
    const events = await environmentEvents(ctl.env.natsUrl, ctl.env.busPrefix, envId, 4);
    expect(events.map((e) => e.event?.$case)).toEqual([
      'environmentCreated',
      'environmentUpdated',
      'serviceAdded',
      'serviceUpdated',
    ]);
  });

  it('deletes a stage, moving its services, and removes a service', async () => {
    const { environment, pipeline } = await create('deleting');
    const envId = environment!.id;
    const db = await add(envId, servicesOfEachKind.db!);
    const [dbStage, jobStage] = pipeline!.stages;
    const deleted = await callUnary(ctl.pipelines, 'deleteStage', {
      environmentId: envId,
      stageId: dbStage!.id,
      moveServicesToStageId: jobStage!.id,
    });
    expect(deleted.pipeline!.stages.map((s) => [s.order, s.name, s.serviceIds])).toEqual([
      [0, 'DEFAULT JOB', [db.id]],
      [1, 'DEFAULT CONTAINER', []],
      [2, 'DEFAULT APPLICATION', []],
    ]);
    await callUnary(ctl.environments, 'removeService', { environmentId: envId, serviceId: db.id });
    const { services } = await callUnary(ctl.environments, 'listServices', { environmentId: envId });
    expect(services).toEqual([]);
  });
});
