// handleBuildJob on real registries and a real database: what a MIRROR job copies where, the step it
// reports, the record it keeps, and how it fails or stops.
import { type Database, openDatabase } from '@stageline/db';
import { bus, control } from '@stageline/proto';
import { type ResolvedServer, resolveRegistry, useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrations } from '../src/adapters/db/migrations.ts';
import { MirrorStore } from '../src/adapters/db/mirror-store.ts';
import { RegistryClient } from '../src/adapters/registry/client.ts';
import { type BuildJobDeps, handleBuildJob } from '../src/app/build-job.ts';
import {
  type PushedImage,
  pushImage,
  type RecordingProxy,
  recordingContext,
  silentLog,
  startProxy,
  uniqueName,
} from './support.ts';

const { StepKind, StepOutcome, ServiceState, ServiceKind, MirrorMode } = control;

const isolated = useIsolatedEnvironment();
let db: Database;
let store: MirrorStore;
let mirrorServer: ResolvedServer;
let externalServer: ResolvedServer;
let mirror: RecordingProxy;
let external: RecordingProxy;
let deps: BuildJobDeps;
let busybox: PushedImage;
const client = new RegistryClient({ chunkSize: 64 * 1024 });
/** Unique per run: the mirror may be the long-lived one on 127.0.0.1:5000. */
const project = uniqueName('demo');
const examples = uniqueName('examples');

beforeAll(async () => {
  db = await openDatabase({ url: isolated.databaseUrl, schema: 'build', entities: [], migrations, log: silentLog });
  store = new MirrorStore(db);
  mirrorServer = await resolveRegistry();
  externalServer = await resolveRegistry({ strategy: 'binary' });
  mirror = await startProxy(new URL(mirrorServer.url).host);
  external = await startProxy(new URL(externalServer.url).host);
  deps = { registry: client, mirrorRegistry: mirror.host, mirrors: store };
  busybox = await pushImage(client, { registry: external.host, repository: `${examples}/busybox` }, '1.36', {
    layers: [120 * 1024],
  });
});

afterAll(async () => {
  await mirror?.close();
  await external?.close();
  await externalServer?.stop();
  await db?.close();
});

function containerService(name: string, image: string, tag: string): control.Service {
  return control.Service.fromPartial({
    id: uniqueName('svc-'),
    name,
    kind: ServiceKind.SERVICE_KIND_CONTAINER,
    source: { $case: 'container', value: { image, tag, ports: [{ port: 8080, public: true }] } },
  });
}

function mirrorJob(service: control.Service, overrides: Partial<bus.BuildJob> = {}): bus.BuildJob {
  return bus.BuildJob.fromPartial({
    jobId: uniqueName('job-'),
    deploymentId: uniqueName('dep-'),
    environmentId: uniqueName('env-'),
    project,
    environmentName: 'staging',
    kind: bus.BuildKind.BUILD_KIND_MIRROR,
    service,
    version: '',
    mirrorMode: MirrorMode.MIRROR_MODE_SERVICE,
    attempt: 1,
    ...overrides,
  });
}

function since(proxy: RecordingProxy): () => RecordingProxy['requests'] {
  const start = proxy.requests.length;
  return () => proxy.requests.slice(start);
}

const busyboxImage = () => `${external.host}/${examples}/busybox`;

describe('MIRROR jobs', () => {
  it('mirrors a CONTAINER image to <project>/<env>/<service>:<tag>, then reports a cache hit', async () => {
    const job = mirrorJob(containerService('web', busyboxImage(), '1.36'));
    const ctx = recordingContext();
    const finished = await handleBuildJob(deps, job, ctx);

    const expected = `${mirror.host}/${project}/staging/web:1.36@${busybox.digest}`;
    expect(finished).toEqual(
      bus.JobFinished.fromPartial({ succeeded: true, image: expected, message: finished.message }),
    );
    expect(ctx.started).toEqual([
      {
        kind: StepKind.STEP_KIND_MIRROR_IMAGE,
        message: `mirroring ${busyboxImage()}:1.36 to ${mirror.host}/${project}/staging/web:1.36`,
      },
    ]);
    expect(ctx.finished).toHaveLength(1);
    const step = ctx.finished[0]!;
    expect(step.kind).toBe(StepKind.STEP_KIND_MIRROR_IMAGE);
    expect(step.outcome).toBe(StepOutcome.STEP_OUTCOME_SUCCESS);
    expect(step.message).toMatch(/^mirrored .* 2 blob\(s\) copied/);
    expect(step.startedAt!.getTime()).toBeLessThanOrEqual(step.finishedAt!.getTime());
    expect(ctx.lines.filter((l) => / copied$/.test(l))).toHaveLength(2);
    expect(ctx.heartbeats).toBeGreaterThan(0);
    // The mirror really has it under that name.
    const head = await client.headManifest({
      registry: mirror.host,
      repository: `${project}/staging/web`,
      tag: '1.36',
    });
    expect(head?.digest).toBe(busybox.digest);

    const [entry, ...others] = await store.findByDestination(`${mirror.host}/${project}/staging/web:1.36`);
    expect(others).toEqual([]);
    expect(entry).toMatchObject({
      sourceRef: `${busyboxImage()}:1.36`,
      sourceRepository: busyboxImage(),
      sourceDigest: busybox.digest,
      destinationRepository: `${project}/staging/web`,
      digest: busybox.digest,
    });

    // The same job again (a redeploy, or a redelivery): nothing is written to the mirror.
    const writes = since(mirror);
    const again = recordingContext();
    const hit = await handleBuildJob(deps, job, again);
    expect(hit.succeeded).toBe(true);
    expect(hit.image).toBe(expected);
    expect(again.finished[0]?.outcome).toBe(StepOutcome.STEP_OUTCOME_CACHE_HIT);
    expect(again.finished[0]?.message).toBe(
      `cache hit: mirror already has ${mirror.host}/${project}/staging/web@${busybox.digest}`,
    );
    expect(writes().filter((r) => r.method !== 'GET' && r.method !== 'HEAD')).toEqual([]);
    expect(await store.findByDestination(`${mirror.host}/${project}/staging/web:1.36`)).toHaveLength(1);
  });

  it('mounts the blobs of an earlier mirror of the same source instead of copying them', async () => {
    await handleBuildJob(deps, mirrorJob(containerService('web', busyboxImage(), '1.36')), recordingContext());
    const writes = since(mirror);
    const ctx = recordingContext();
    const finished = await handleBuildJob(deps, mirrorJob(containerService('api', busyboxImage(), '1.36')), ctx);
    expect(finished.succeeded).toBe(true);
    expect(finished.image).toBe(`${mirror.host}/${project}/staging/api:1.36@${busybox.digest}`);
    expect(ctx.lines.filter((l) => l.includes(`mounted from ${project}/staging/web`))).toHaveLength(2);
    expect(writes().filter((r) => r.method === 'PATCH')).toEqual([]);
  });

  it('shares one copy per source in MIRROR_MODE_SHARED', async () => {
    const shared = { mirrorMode: MirrorMode.MIRROR_MODE_SHARED };
    const port = new URL(`http://${external.host}`).port;
    const first = await handleBuildJob(
      deps,
      mirrorJob(containerService('one', busyboxImage(), '1.36'), shared),
      recordingContext(),
    );
    expect(first.image).toBe(
      `${mirror.host}/${project}/shared/127-0-0-1-${port}/${examples}/busybox:1.36@${busybox.digest}`,
    );
    const ctx = recordingContext();
    const second = await handleBuildJob(
      deps,
      mirrorJob(containerService('two', busyboxImage(), '1.36'), { ...shared, environmentName: 'prod' }),
      ctx,
    );
    expect(second.image).toBe(first.image);
    expect(ctx.finished[0]?.outcome).toBe(StepOutcome.STEP_OUTCOME_CACHE_HIT);
  });

  it('takes the tag from the job version, and mirrors databases and jobs that run an image', async () => {
    const v2 = await pushImage(client, { registry: external.host, repository: `${examples}/busybox` }, '2');
    const pinned = await handleBuildJob(
      deps,
      mirrorJob(containerService('pinned', busyboxImage(), '1.36'), { version: 'tag:2' }),
      recordingContext(),
    );
    expect(pinned.image).toBe(`${mirror.host}/${project}/staging/pinned:2@${v2.digest}`);

    const pg = await pushImage(client, { registry: external.host, repository: `${examples}/postgres` }, '16');
    const database = control.Service.fromPartial({
      id: uniqueName('svc-'),
      name: 'db',
      kind: ServiceKind.SERVICE_KIND_DATABASE,
      source: {
        $case: 'database',
        value: {
          engine: control.DatabaseEngine.DATABASE_ENGINE_POSTGRESQL,
          version: '16',
          mode: control.DatabaseMode.DATABASE_MODE_CONTAINER,
          image: `${external.host}/${examples}/postgres`,
        },
      },
    });
    const db16 = await handleBuildJob(deps, mirrorJob(database), recordingContext());
    expect(db16.image).toBe(`${mirror.host}/${project}/staging/db:16@${pg.digest}`);

    const job = control.Service.fromPartial({
      id: uniqueName('svc-'),
      name: 'migrate',
      kind: ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
      source: {
        $case: 'job',
        value: {
          from: { $case: 'container', value: { image: busyboxImage(), tag: '1.36', ports: [] } },
          onDeploy: true,
        },
      },
    });
    const migrate = await handleBuildJob(deps, mirrorJob(job), recordingContext());
    expect(migrate.image).toBe(`${mirror.host}/${project}/staging/migrate:1.36@${busybox.digest}`);
  });

  it('copies again with force_build, though every blob is already there', async () => {
    await handleBuildJob(deps, mirrorJob(containerService('forced', busyboxImage(), '1.36')), recordingContext());
    const ctx = recordingContext();
    const finished = await handleBuildJob(
      deps,
      mirrorJob(containerService('forced', busyboxImage(), '1.36'), { forceBuild: true }),
      ctx,
    );
    expect(finished.succeeded).toBe(true);
    expect(ctx.finished[0]?.outcome).toBe(StepOutcome.STEP_OUTCOME_SUCCESS);
    expect(ctx.finished[0]?.message).toMatch(/0 blob\(s\) copied .* 0 mounted, 2 already there/);
  });
});

describe('MIRROR job failures', () => {
  it('fails with a clear message when the source image does not exist', async () => {
    const missing = `${external.host}/${examples}/nope`;
    const ctx = recordingContext();
    const finished = await handleBuildJob(deps, mirrorJob(containerService('nope', missing, '1')), ctx);
    const message = `image ${missing}:1 not found in its registry`;
    expect(finished).toEqual(
      bus.JobFinished.fromPartial({ succeeded: false, state: ServiceState.SERVICE_STATE_BUILD_ERROR, message }),
    );
    expect(ctx.finished).toHaveLength(1);
    expect(ctx.finished[0]).toMatchObject({ outcome: StepOutcome.STEP_OUTCOME_ERROR, message });
    expect(ctx.lines).toContain(message);
  });

  it('fails, reporting the step, when the service has no image to mirror', async () => {
    const app = control.Service.fromPartial({
      id: uniqueName('svc-'),
      name: 'app',
      kind: ServiceKind.SERVICE_KIND_APPLICATION,
      source: { $case: 'application', value: { gitUrl: 'https://example.com/a.git' } },
    });
    const ctx = recordingContext();
    const finished = await handleBuildJob(deps, mirrorJob(app), ctx);
    expect(finished.succeeded).toBe(false);
    expect(finished.state).toBe(ServiceState.SERVICE_STATE_BUILD_ERROR);
    expect(finished.message).toBe('service.application: an APPLICATION is built from git, not mirrored');
    expect(ctx.finished[0]?.outcome).toBe(StepOutcome.STEP_OUTCOME_ERROR);

    const bad = await handleBuildJob(
      deps,
      mirrorJob(containerService('bad', `${external.host}/Bad/Name`, '1')),
      recordingContext(),
    );
    expect(bad.message).toMatch(/^service\.container\.image: /);
  });

  it('answers GIT builds with a clear failure when the worker has no git build set up', async () => {
    const ctx = recordingContext();
    const finished = await handleBuildJob(
      deps,
      mirrorJob(containerService('x', busyboxImage(), '1'), { kind: bus.BuildKind.BUILD_KIND_GIT }),
      ctx,
    );
    expect(finished).toEqual(
      bus.JobFinished.fromPartial({
        succeeded: false,
        state: ServiceState.SERVICE_STATE_BUILD_ERROR,
        message: 'this build worker is not set up for git builds',
      }),
    );
    expect(ctx.started).toEqual([]);
  });

  it('stops the copy when the run is canceled and reports CANCELED', async () => {
    const source = await pushImage(client, { registry: external.host, repository: `${examples}/slow` }, '1');
    const controller = new AbortController();
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const stalling = await startProxy(new URL(externalServer.url).host, {
      hold: (req, url) => {
        if (req.method !== 'GET' || !url.pathname.includes('/blobs/')) return undefined;
        controller.abort(new Error('canceled'));
        return held;
      },
    });
    try {
      const ctx = recordingContext(controller.signal);
      const finished = await handleBuildJob(
        deps,
        mirrorJob(containerService('slow', `${stalling.host}/${examples}/slow`, '1')),
        ctx,
      );
      expect(finished.succeeded).toBe(false);
      expect(finished.state).toBe(ServiceState.SERVICE_STATE_CANCELED);
      expect(ctx.finished[0]?.outcome).toBe(StepOutcome.STEP_OUTCOME_CANCELED);
      const destination = { registry: mirror.host, repository: `${project}/staging/slow`, tag: '1' };
      expect(await client.headManifest(destination)).toBeUndefined();
      expect(source.digest).toMatch(/^sha256:/);
    } finally {
      release();
      await stalling.close();
    }
  });
});
