// Input limits end to end (issue 21), on the four services as processes with the dev stack's source
// policy exactly: the example environment still deploys, the largest environment the size limits allow
// deploys and clones, and every message they put on the bus is measured against NATS's max_payload.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { MAX_PAYLOAD, useBusSizes } from './bus-sizes.ts';
import { runStatusName, useStack, watchToEnd } from './stack.ts';

const EXAMPLE = fileURLToPath(new URL('../../deploy/examples/demo-staging.json', import.meta.url));
const DEV_POLICY = 'file:///var/lib/stageline/repos/,127.0.0.1:5001';
const stack = useStack({ env: { STAGELINE_SOURCE_ALLOW: DEV_POLICY } });
const sizes = useBusSizes(stack);

async function deploy(environmentId: string) {
  const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
    versions: {},
    environmentId,
    requester: 'e2e',
    forceBuild: false,
  });
  return (await watchToEnd(stack, deployment!.id, 300_000)).final;
}

interface ExampleFile {
  settings?: unknown;
  stages: { name: string; description?: string }[];
  services: { stage: string; service: Record<string, unknown> }[];
}

describe('input limits on the running stack', () => {
  it('the example environment deploys with the dev source policy', async () => {
    const spec = JSON.parse(readFileSync(EXAMPLE, 'utf8')) as ExampleFile;
    const created = await callUnary(stack.environments, 'createEnvironment', {
      project: 'demo',
      name: 'policy',
      runtime: 'local',
      settings: control.EnvironmentSettings.fromJSON(spec.settings ?? {}),
    });
    const environmentId = created.environment!.id;
    let pipeline = created.pipeline!;
    for (const stage of spec.stages) {
      if (pipeline.stages.some((s) => s.name === stage.name)) continue;
      const req = control.CreateStageRequest.fromPartial({
        environmentId,
        name: stage.name,
        description: stage.description ?? '',
      });
      pipeline = (await callUnary(stack.pipelines, 'createStage', req)).pipeline!;
    }
    for (const entry of spec.services) {
      const stageId = pipeline.stages.find((s) => s.name === entry.stage)!.id;
      const service = { ...control.Service.fromJSON(entry.service), stageId };
      await callUnary(stack.environments, 'addService', { environmentId, service });
    }
    const final = await deploy(environmentId);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    const { deployment } = await callUnary(stack.deployments, 'deleteEnvironment', {
      environmentId,
      requester: 'e2e',
      forceBuild: false,
    });
    await watchToEnd(stack, deployment!.id, 300_000);
  });

  it('the largest environment the limits allow deploys, clones, and stays under max_payload', async () => {
    const created = await callUnary(
      stack.environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({ project: 'e2e', name: 'largest' }),
    );
    const environmentId = created.environment!.id;
    // Four services of 32 env vars of 4000 bytes (128 000 bytes each, the last ones secret): as many as
    // fit the 512 KiB environment limit; a fifth is refused.
    const service = (i: number) =>
      control.Service.fromPartial({
        name: `big-${i}`,
        kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
        source: {
          $case: 'container',
          value: { image: '127.0.0.1:5001/examples/busybox', tag: '1.36', ports: [] },
        },
        envVars: Array.from({ length: 32 }, (_, k) => {
          const key = `BIG_${String(k).padStart(2, '0')}`;
          return { key, value: String(i).repeat(4000 - key.length), secret: k >= 28 };
        }),
        readinessTimeoutSeconds: 120,
      });
    for (let i = 0; i < 4; i++)
      await callUnary(stack.environments, 'addService', { environmentId, service: service(i) });
    await expect(callUnary(stack.environments, 'addService', { environmentId, service: service(4) })).rejects.toThrow(
      /the encoded size of the whole environment is \d+ bytes; the limit is 512 KiB/,
    );

    const final = await deploy(environmentId);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    // A clone's EnvironmentCreated carries every service: the largest environment event there is.
    const clone = await callUnary(stack.environments, 'cloneEnvironment', {
      sourceEnvironmentId: environmentId,
      name: 'largest-clone',
      preview: false,
    });
    expect(clone.environment!.settings!.namespace).toBe('e2e-largest-clone');
    const { deployment } = await callUnary(stack.deployments, 'deleteEnvironment', {
      environmentId,
      requester: 'e2e',
      forceBuild: false,
    });
    await watchToEnd(stack, deployment!.id, 300_000);

    // Every message of both tests reached the bus, the largest well under max_payload.
    expect(await sizes.atLeast('events.environments', 4 * 100_000)).toBeGreaterThan(4 * 100_000);
    expect(sizes.largest.get('jobs.deploy') ?? 0).toBeGreaterThan(100_000);
    for (const [family, bytes] of sizes.largest) expect(bytes, family).toBeLessThan(MAX_PAYLOAD * 0.6);
  });
});
