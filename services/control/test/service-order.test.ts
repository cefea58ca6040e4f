import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { type DeepPartial, useControl } from './harness.ts';

// Within a stage, services keep an explicit position: a service added or moved into a stage goes
// last, a deleted stage's services follow the target's own, and every read and every clone gives
// that order back.

const { ServiceKind } = control;
const ctl = useControl();

const image = { $case: 'container' as const, value: { image: 'ghcr.io/acme/app', tag: 'v1' } };
const byKind: Record<string, DeepPartial<control.Service>> = {
  database: {
    kind: ServiceKind.SERVICE_KIND_DATABASE,
    source: { $case: 'database', value: { engine: control.DatabaseEngine.DATABASE_ENGINE_POSTGRESQL } },
  },
  job: {
    kind: ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
    source: { $case: 'job', value: { from: image, onDeploy: true } },
  },
  cron: {
    kind: ServiceKind.SERVICE_KIND_CRON_JOB,
    source: { $case: 'job', value: { from: image, schedule: '0 3 * * *' } },
  },
  container: { kind: ServiceKind.SERVICE_KIND_CONTAINER, source: image },
  application: {
    kind: ServiceKind.SERVICE_KIND_APPLICATION,
    source: { $case: 'application', value: { gitUrl: 'https://git.example.com/acme/api.git', branch: 'main' } },
  },
};

async function add(environmentId: string, name: string, kind: string): Promise<control.Service> {
  const service = { ...byKind[kind], name };
  const r = await callUnary(
    ctl.environments,
    'addService',
    control.AddServiceRequest.fromPartial({ environmentId, service }),
  );
  return r.service!;
}

/** The pipeline as stage name → service names in order, from GetPipeline and ListServices together. */
async function layout(environmentId: string): Promise<{ stages: [string, string[]][]; listed: string[] }> {
  const [{ pipeline }, { services }] = await Promise.all([
    callUnary(ctl.pipelines, 'getPipeline', { environmentId }),
    callUnary(ctl.environments, 'listServices', { environmentId }),
  ]);
  const names = new Map(services.map((s) => [s.id, s.name]));
  return {
    stages: pipeline!.stages.map((s) => [s.name, s.serviceIds.map((id) => names.get(id) ?? `? ${id}`)]),
    listed: services.map((s) => s.name),
  };
}

describe('the order of services within a stage', () => {
  it('puts added and moved services last, keeps it on every read, and every clone copies it', async () => {
    const { environment, pipeline } = await callUnary(
      ctl.environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({ project: 'order', name: 'source' }),
    );
    const envId = environment!.id;
    const [dbStage, jobStage, containerStage, appStage] = pipeline!.stages.map((s) => s.id);
    const ids: Record<string, string> = {};
    for (const [name, kind] of [
      ['pg', 'database'],
      ['redis', 'database'],
      ['migrate', 'job'],
      ['seed', 'job'],
      ['nightly', 'cron'],
      ['web', 'container'],
      ['worker', 'container'],
      ['api', 'application'],
    ] as const) {
      ids[name] = (await add(envId, name, kind)).id;
    }
    const move = (name: string, stageId: string | undefined) =>
      callUnary(ctl.pipelines, 'moveService', { environmentId: envId, serviceId: ids[name]!, stageId: stageId! });

    // Services made earlier move behind later ones: an order by creation (or id) cannot give this.
    await move('migrate', containerStage);
    await move('web', jobStage);
    await move('worker', containerStage); // its own stage: stays where it is
    await callUnary(ctl.pipelines, 'deleteStage', {
      environmentId: envId,
      stageId: dbStage!,
      moveServicesToStageId: appStage!,
    });
    await callUnary(ctl.environments, 'removeService', { environmentId: envId, serviceId: ids.seed! });
    await add(envId, 'report', 'cron');
    await callUnary(ctl.pipelines, 'setServiceSkipped', { environmentId: envId, serviceId: ids.web!, skipped: true });

    const expected = {
      stages: [
        ['DEFAULT JOB', ['nightly', 'web', 'report']],
        ['DEFAULT CONTAINER', ['worker', 'migrate']],
        ['DEFAULT APPLICATION', ['api', 'pg', 'redis']],
      ] as [string, string[]][],
      listed: ['nightly', 'web', 'report', 'worker', 'migrate', 'api', 'pg', 'redis'],
    };
    for (let i = 0; i < 3; i++) expect(await layout(envId)).toEqual(expected);

    // Clones, preview or not, one after another and several at once, and clones of clones.
    const clone = async (sourceEnvironmentId: string, name: string, preview: boolean) => {
      const r = await callUnary(ctl.environments, 'cloneEnvironment', { sourceEnvironmentId, name, preview });
      expect(r.environment).toMatchObject({ preview, clonedFromId: sourceEnvironmentId });
      return r;
    };
    const check = async (r: control.CloneEnvironmentResponse) => {
      const got = await layout(r.environment!.id);
      expect(got).toEqual(expected);
      // The pipeline the clone answered with is the one it stored.
      const { pipeline: stored } = await callUnary(ctl.pipelines, 'getPipeline', {
        environmentId: r.environment!.id,
      });
      expect(stored).toEqual(r.pipeline);
      const { services } = await callUnary(ctl.environments, 'listServices', { environmentId: r.environment!.id });
      expect(services.map((s) => [s.name, s.skipped])).toEqual(expected.listed.map((n) => [n, n === 'web']));
      expect(services.some((s) => Object.values(ids).includes(s.id))).toBe(false);
    };
    const clones: control.CloneEnvironmentResponse[] = [];
    for (let i = 0; i < 12; i++) {
      const r = await clone(envId, `copy-${i}`, i % 2 === 0);
      await check(r);
      clones.push(r);
    }
    const together = await Promise.all(Array.from({ length: 6 }, (_, i) => clone(envId, `pr-${i}`, true)));
    for (const r of together) await check(r);
    let from = clones[0]!.environment!.id;
    for (let i = 0; i < 4; i++) {
      const r = await clone(from, `chain-${i}`, i % 2 === 1);
      await check(r);
      from = r.environment!.id;
    }
    expect(await layout(envId)).toEqual(expected);
  });

  it('reads the same order on every call', async () => {
    const { environment } = await callUnary(
      ctl.environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({ project: 'order', name: 'many' }),
    );
    const envId = environment!.id;
    // Added at once: whichever order they land in, that order holds from then on.
    await Promise.all(Array.from({ length: 8 }, (_, i) => add(envId, `job-${i}`, i % 2 ? 'job' : 'cron')));
    const first = await layout(envId);
    expect(first.stages[1]![1]).toHaveLength(8);
    for (let i = 0; i < 5; i++) expect(await layout(envId)).toEqual(first);
    const copy = await callUnary(ctl.environments, 'cloneEnvironment', {
      sourceEnvironmentId: envId,
      name: 'many-copy',
      preview: true,
    });
    expect(await layout(copy.environment!.id)).toEqual(first);
  });
});
