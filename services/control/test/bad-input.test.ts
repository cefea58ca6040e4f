import * as grpc from '@grpc/grpc-js';
import { callUnary, fieldOf, isServiceError } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { type DeepPartial, environmentEvents, useControl } from './harness.ts';

// Every bad request gets a status code and names the field at fault, and leaves nothing behind.

const ctl = useControl();
const { ServiceKind } = control;
let envId = '';
let stageIds: string[] = [];
let webId = '';

const container = (image: string, tag = 'v1'): Partial<control.Service> => ({
  name: 'svc',
  kind: ServiceKind.SERVICE_KIND_CONTAINER,
  source: { $case: 'container', value: { image, tag, ports: [] } },
});
const application = (app: Partial<control.ApplicationSource>): Partial<control.Service> => ({
  name: 'app',
  kind: ServiceKind.SERVICE_KIND_APPLICATION,
  source: {
    $case: 'application',
    value: control.ApplicationSource.fromPartial({ gitUrl: 'https://git.example.com/a.git', ...app }),
  },
});
const job = (kind: control.ServiceKind, value: DeepPartial<control.JobSource>): Partial<control.Service> => ({
  name: 'job',
  kind,
  source: { $case: 'job', value: control.JobSource.fromPartial(value) },
});

beforeAll(async () => {
  const created = await callUnary(
    ctl.environments,
    'createEnvironment',
    control.CreateEnvironmentRequest.fromPartial({ project: 'bad', name: 'input' }),
  );
  envId = created.environment!.id;
  stageIds = created.pipeline!.stages.map((s) => s.id);
  const web = await callUnary(
    ctl.environments,
    'addService',
    control.AddServiceRequest.fromPartial({ environmentId: envId, service: { ...container('nginx'), name: 'web' } }),
  );
  webId = web.service!.id;
});

type Case = [name: string, call: () => Promise<unknown>, code: grpc.status, field: string];

const createEnv = (req: DeepPartial<control.CreateEnvironmentRequest>) =>
  callUnary(ctl.environments, 'createEnvironment', control.CreateEnvironmentRequest.fromPartial(req));
const addService = (service: Partial<control.Service>) =>
  callUnary(ctl.environments, 'addService', control.AddServiceRequest.fromPartial({ environmentId: envId, service }));

const { INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION } = grpc.status;

const cases: Case[] = [
  [
    'environment name not a DNS label',
    () => createEnv({ project: 'bad', name: 'Not_A_Label' }),
    INVALID_ARGUMENT,
    'name',
  ],
  ['environment name too long', () => createEnv({ project: 'bad', name: 'a'.repeat(64) }), INVALID_ARGUMENT, 'name'],
  ['project missing', () => createEnv({ project: '', name: 'x' }), INVALID_ARGUMENT, 'project'],
  ['unknown runtime', () => createEnv({ project: 'bad', name: 'x', runtime: 'docker' }), INVALID_ARGUMENT, 'runtime'],
  [
    'max_parallel_builds 0',
    () => createEnv({ project: 'bad', name: 'x', settings: { maxParallelBuilds: 0 } }),
    INVALID_ARGUMENT,
    'settings.max_parallel_builds',
  ],
  [
    'max_parallel_deploys 8',
    () => createEnv({ project: 'bad', name: 'x', settings: { maxParallelDeploys: 8 } }),
    INVALID_ARGUMENT,
    'settings.max_parallel_deploys',
  ],
  [
    'namespace not a DNS label',
    () => createEnv({ project: 'bad', name: 'x', settings: { namespace: '-ns' } }),
    INVALID_ARGUMENT,
    'settings.namespace',
  ],
  ['duplicate environment name', () => createEnv({ project: 'bad', name: 'input' }), ALREADY_EXISTS, 'name'],
  [
    'unknown environment',
    () => callUnary(ctl.environments, 'getEnvironment', { environmentId: '0190c5f0-0000-7000-8000-000000000000' }),
    NOT_FOUND,
    'environment_id',
  ],
  [
    'malformed environment id',
    () => callUnary(ctl.environments, 'getEnvironment', { environmentId: 'nope' }),
    NOT_FOUND,
    'environment_id',
  ],
  [
    'missing environment id',
    () => callUnary(ctl.environments, 'getEnvironment', { environmentId: '' }),
    INVALID_ARGUMENT,
    'environment_id',
  ],
  [
    'bad page token',
    () => callUnary(ctl.environments, 'listEnvironments', { project: '', pageSize: 1, pageToken: '!!' }),
    INVALID_ARGUMENT,
    'page_token',
  ],
  [
    'service name not a DNS label',
    () => addService({ ...container('nginx'), name: 'Web Server' }),
    INVALID_ARGUMENT,
    'service.name',
  ],
  [
    'service kind missing',
    () => addService({ ...container('nginx'), kind: ServiceKind.SERVICE_KIND_UNSPECIFIED }),
    INVALID_ARGUMENT,
    'service.kind',
  ],
  [
    'source does not match kind',
    () => addService({ ...container('nginx'), kind: ServiceKind.SERVICE_KIND_DATABASE }),
    INVALID_ARGUMENT,
    'service.container',
  ],
  [
    'source missing',
    () => addService({ name: 'x', kind: ServiceKind.SERVICE_KIND_CONTAINER }),
    INVALID_ARGUMENT,
    'service.container',
  ],
  ['image with uppercase', () => addService(container('Nginx')), INVALID_ARGUMENT, 'service.container.image'],
  [
    'image with tag in the reference',
    () => addService(container('nginx:1.27')),
    INVALID_ARGUMENT,
    'service.container.image',
  ],
  ['image starting with "-"', () => addService(container('--privileged')), INVALID_ARGUMENT, 'service.container.image'],
  ['image tag with a space', () => addService(container('nginx', 'v 1')), INVALID_ARGUMENT, 'service.container.tag'],
  [
    'port out of range',
    () =>
      addService({
        ...container('nginx'),
        source: { $case: 'container', value: { image: 'nginx', tag: 'v1', ports: [{ port: 70000, public: false }] } },
      }),
    INVALID_ARGUMENT,
    'service.container.ports[0].port',
  ],
  [
    'git URL starting with "-"',
    () => addService(application({ gitUrl: '--upload-pack=touch /tmp/pwned' })),
    INVALID_ARGUMENT,
    'service.application.git_url',
  ],
  [
    'git URL with ext:: transport',
    () => addService(application({ gitUrl: 'ext::sh -c touch% /tmp/pwned' })),
    INVALID_ARGUMENT,
    'service.application.git_url',
  ],
  [
    'git URL with an unknown scheme',
    () => addService(application({ gitUrl: 'ftp://example.com/repo.git' })),
    INVALID_ARGUMENT,
    'service.application.git_url',
  ],
  [
    'git URL with an embedded password',
    () => addService(application({ gitUrl: 'https://u:p@example.com/r.git' })),
    INVALID_ARGUMENT,
    'service.application.git_url',
  ],
  [
    'branch starting with "-"',
    () => addService(application({ branch: '-b' })),
    INVALID_ARGUMENT,
    'service.application.branch',
  ],
  [
    'branch with ".."',
    () => addService(application({ branch: 'a..b' })),
    INVALID_ARGUMENT,
    'service.application.branch',
  ],
  [
    'commit not hex',
    () => addService(application({ commit: 'zzzzzzz' })),
    INVALID_ARGUMENT,
    'service.application.commit',
  ],
  [
    'root path escaping the repo',
    () => addService(application({ rootPath: '../etc' })),
    INVALID_ARGUMENT,
    'service.application.root_path',
  ],
  [
    'dockerfile path escaping the repo',
    () => addService(application({ dockerfilePath: 'a/../../Dockerfile' })),
    INVALID_ARGUMENT,
    'service.application.dockerfile_path',
  ],
  [
    'build target with a space',
    () => addService(application({ buildTarget: 'a b' })),
    INVALID_ARGUMENT,
    'service.application.build_target',
  ],
  [
    'database engine missing',
    () =>
      addService({
        name: 'db',
        kind: ServiceKind.SERVICE_KIND_DATABASE,
        source: { $case: 'database', value: control.DatabaseSource.fromPartial({}) },
      }),
    INVALID_ARGUMENT,
    'service.database.engine',
  ],
  [
    'managed redis',
    () =>
      addService({
        name: 'db',
        kind: ServiceKind.SERVICE_KIND_DATABASE,
        source: {
          $case: 'database',
          value: control.DatabaseSource.fromPartial({
            engine: control.DatabaseEngine.DATABASE_ENGINE_REDIS,
            mode: control.DatabaseMode.DATABASE_MODE_MANAGED,
          }),
        },
      }),
    INVALID_ARGUMENT,
    'service.database.mode',
  ],
  [
    'cron job without schedule',
    () =>
      addService(job(ServiceKind.SERVICE_KIND_CRON_JOB, { from: { $case: 'container', value: { image: 'busybox' } } })),
    INVALID_ARGUMENT,
    'service.job.schedule',
  ],
  [
    'cron job with a 6-field schedule',
    () =>
      addService(
        job(ServiceKind.SERVICE_KIND_CRON_JOB, {
          from: { $case: 'container', value: { image: 'busybox' } },
          schedule: '0 0 3 * * *',
        }),
      ),
    INVALID_ARGUMENT,
    'service.job.schedule',
  ],
  [
    'cron job with minute 60',
    () =>
      addService(
        job(ServiceKind.SERVICE_KIND_CRON_JOB, {
          from: { $case: 'container', value: { image: 'busybox' } },
          schedule: '60 * * * *',
        }),
      ),
    INVALID_ARGUMENT,
    'service.job.schedule',
  ],
  [
    'lifecycle job without events',
    () =>
      addService(
        job(ServiceKind.SERVICE_KIND_LIFECYCLE_JOB, { from: { $case: 'container', value: { image: 'busybox' } } }),
      ),
    INVALID_ARGUMENT,
    'service.job.on_deploy',
  ],
  [
    'job without image or app',
    () => addService(job(ServiceKind.SERVICE_KIND_LIFECYCLE_JOB, { onDeploy: true })),
    INVALID_ARGUMENT,
    'service.job.from',
  ],
  [
    'job with a bad image',
    () =>
      addService(
        job(ServiceKind.SERVICE_KIND_LIFECYCLE_JOB, {
          onDeploy: true,
          from: { $case: 'container', value: { image: '-x' } },
        }),
      ),
    INVALID_ARGUMENT,
    'service.job.container.image',
  ],
  [
    'env var key with a dash',
    () => addService({ ...container('nginx'), envVars: [{ key: 'A-B', value: '', secret: false }] }),
    INVALID_ARGUMENT,
    'service.env_vars[0].key',
  ],
  [
    'env var key twice',
    () =>
      addService({
        ...container('nginx'),
        envVars: [
          { key: 'A', value: '1', secret: false },
          { key: 'A', value: '2', secret: false },
        ],
      }),
    INVALID_ARGUMENT,
    'service.env_vars[1].key',
  ],
  [
    'secret without value',
    () => addService({ ...container('nginx'), envVars: [{ key: 'A', value: '', secret: true }] }),
    INVALID_ARGUMENT,
    'service.env_vars[0].value',
  ],
  [
    'build cpu too small',
    () => addService({ ...application({}), buildResources: { cpuMillis: 1, memoryMib: 4096 } }),
    INVALID_ARGUMENT,
    'service.build_resources.cpu_millis',
  ],
  [
    'health check path not absolute',
    () =>
      addService({
        ...container('nginx'),
        healthCheck: {
          probe: { $case: 'http', value: { path: 'health', port: 80 } },
          initialDelaySeconds: 0,
          periodSeconds: 0,
        },
      }),
    INVALID_ARGUMENT,
    'service.health_check.http.path',
  ],
  [
    'rolling update surge that is neither a count nor a percentage',
    () => addService({ ...container('nginx'), strategy: { type: 1, maxSurge: 'lots', maxUnavailable: '' } }),
    INVALID_ARGUMENT,
    'service.strategy.max_surge',
  ],
  [
    'rolling update that can make no progress (0 surge, 0 unavailable)',
    () => addService({ ...container('nginx'), strategy: { type: 1, maxSurge: '0', maxUnavailable: '0%' } }),
    INVALID_ARGUMENT,
    'service.strategy.max_unavailable',
  ],
  [
    'recreate with a surge',
    () => addService({ ...container('nginx'), strategy: { type: 2, maxSurge: '1', maxUnavailable: '' } }),
    INVALID_ARGUMENT,
    'service.strategy.max_surge',
  ],
  [
    'strategy on a database',
    () =>
      addService({
        name: 'db',
        kind: ServiceKind.SERVICE_KIND_DATABASE,
        source: { $case: 'database', value: { engine: 1, version: '16', mode: 1, image: '' } },
        strategy: { type: 2, maxSurge: '', maxUnavailable: '' },
      }),
    INVALID_ARGUMENT,
    'service.strategy',
  ],
  [
    'custom chart path on a CONTAINER (it has no git repository)',
    () => addService({ ...container('nginx'), chart: { source: { $case: 'path', value: 'chart' }, valuesYaml: '' } }),
    INVALID_ARGUMENT,
    'service.chart.path',
  ],
  [
    'custom chart path climbing out of the repository',
    () => addService({ ...application({}), chart: { source: { $case: 'path', value: '../x' }, valuesYaml: '' } }),
    INVALID_ARGUMENT,
    'service.chart.path',
  ],
  [
    'custom chart repository that is not a URL',
    () =>
      addService({
        ...container('nginx'),
        chart: { source: { $case: 'repository', value: { url: 'charts', name: 'web', version: '' } }, valuesYaml: '' },
      }),
    INVALID_ARGUMENT,
    'service.chart.repository.url',
  ],
  [
    'custom chart repository without the chart name',
    () =>
      addService({
        ...container('nginx'),
        chart: {
          source: { $case: 'repository', value: { url: 'https://charts.example.com', name: '', version: '' } },
          valuesYaml: '',
        },
      }),
    INVALID_ARGUMENT,
    'service.chart.repository.name',
  ],
  [
    'custom chart on a lifecycle job',
    () =>
      addService({
        ...job(ServiceKind.SERVICE_KIND_LIFECYCLE_JOB, {
          from: { $case: 'container', value: { image: 'busybox', tag: '1' } },
          onDeploy: true,
        }),
        chart: {
          source: { $case: 'repository', value: { url: 'https://charts.example.com', name: 'x', version: '' } },
          valuesYaml: '',
        },
      }),
    INVALID_ARGUMENT,
    'service.chart',
  ],
  [
    'unknown stage for a service',
    () => addService({ ...container('nginx'), stageId: '0190c5f0-0000-7000-8000-000000000000' }),
    NOT_FOUND,
    'service.stage_id',
  ],
  ['duplicate service name', () => addService({ ...container('nginx'), name: 'web' }), ALREADY_EXISTS, 'service.name'],
  [
    'stage name empty',
    () =>
      callUnary(
        ctl.pipelines,
        'createStage',
        control.CreateStageRequest.fromPartial({ environmentId: envId, name: '' }),
      ),
    INVALID_ARGUMENT,
    'name',
  ],
  [
    'stage name with a control character',
    () =>
      callUnary(
        ctl.pipelines,
        'createStage',
        control.CreateStageRequest.fromPartial({ environmentId: envId, name: 'a\nb' }),
      ),
    INVALID_ARGUMENT,
    'name',
  ],
  [
    'duplicate stage name',
    () =>
      callUnary(
        ctl.pipelines,
        'createStage',
        control.CreateStageRequest.fromPartial({ environmentId: envId, name: 'DEFAULT JOB' }),
      ),
    ALREADY_EXISTS,
    'name',
  ],
  [
    'stage position past the end',
    () =>
      callUnary(
        ctl.pipelines,
        'createStage',
        control.CreateStageRequest.fromPartial({ environmentId: envId, name: 'late', position: 9 }),
      ),
    INVALID_ARGUMENT,
    'position',
  ],
  [
    'move stage past the end',
    () => callUnary(ctl.pipelines, 'moveStage', { environmentId: envId, stageId: stageIds[0]!, position: 4 }),
    INVALID_ARGUMENT,
    'position',
  ],
  [
    'move unknown stage',
    () => callUnary(ctl.pipelines, 'moveStage', { environmentId: envId, stageId: 'nope', position: 0 }),
    NOT_FOUND,
    'stage_id',
  ],
  [
    'delete non-empty stage without target',
    () =>
      callUnary(ctl.pipelines, 'deleteStage', {
        environmentId: envId,
        stageId: stageIds[2]!,
        moveServicesToStageId: '',
      }),
    FAILED_PRECONDITION,
    'move_services_to_stage_id',
  ],
  [
    'move unknown service',
    () => callUnary(ctl.pipelines, 'moveService', { environmentId: envId, serviceId: 'nope', stageId: stageIds[0]! }),
    NOT_FOUND,
    'service_id',
  ],
  [
    'move service to unknown stage',
    () => callUnary(ctl.pipelines, 'moveService', { environmentId: envId, serviceId: webId, stageId: 'nope' }),
    NOT_FOUND,
    'stage_id',
  ],
  [
    'skip unknown service',
    () => callUnary(ctl.pipelines, 'setServiceSkipped', { environmentId: envId, serviceId: 'nope', skipped: true }),
    NOT_FOUND,
    'service_id',
  ],
  [
    'remove unknown service',
    () => callUnary(ctl.environments, 'removeService', { environmentId: envId, serviceId: 'nope' }),
    NOT_FOUND,
    'service_id',
  ],
  [
    'update service changing kind',
    () =>
      callUnary(ctl.environments, 'updateService', {
        environmentId: envId,
        service: control.Service.fromPartial({ ...application({}), id: webId, name: 'web' }),
      }),
    INVALID_ARGUMENT,
    'service.kind',
  ],
  [
    'clone to an invalid name',
    () =>
      callUnary(ctl.environments, 'cloneEnvironment', { sourceEnvironmentId: envId, name: 'UPPER', preview: false }),
    INVALID_ARGUMENT,
    'name',
  ],
  [
    'clone to a taken name',
    () =>
      callUnary(ctl.environments, 'cloneEnvironment', { sourceEnvironmentId: envId, name: 'input', preview: false }),
    ALREADY_EXISTS,
    'name',
  ],
];

describe('bad input', () => {
  it.each(cases)('%s → %s', async (_name, call, code, field) => {
    const error = await call().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isServiceError(error), 'the call should have failed').toBe(true);
    const e = error as grpc.ServiceError;
    expect({ code: grpc.status[e.code], field: fieldOf(e) }).toEqual({ code: grpc.status[code], field });
    expect(e.details).toContain(field);
  });

  it('left no partial state behind', async () => {
    const { services } = await callUnary(ctl.environments, 'listServices', { environmentId: envId });
    expect(services.map((s) => s.name)).toEqual(['web']);
    const { pipeline } = await callUnary(ctl.pipelines, 'getPipeline', { environmentId: envId });
    expect(pipeline!.stages.map((s) => s.id)).toEqual(stageIds);
    const { environments } = await callUnary(ctl.environments, 'listEnvironments', {
      project: 'bad',
      pageSize: 0,
      pageToken: '',
    });
    expect(environments.map((e) => e.name)).toEqual(['input']);
    // Refused requests emitted no events: only the creation and the one service.
    const events = await environmentEvents(ctl.env.natsUrl, ctl.env.busPrefix, envId, 2);
    expect(events.map((e) => e.event?.$case)).toEqual(['environmentCreated', 'serviceAdded']);
  });
});
