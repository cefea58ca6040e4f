// The other corner of the limits (issue 21): an environment with as many services (64) and stages (32)
// as allowed, filled up to its 512 KiB, deployed and cloned — on the noop executor, since 64 real pods
// would say nothing more about the bus — with every message it puts on the bus measured.
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { MAX_PAYLOAD, useBusSizes } from './bus-sizes.ts';
import { runStatusName, useStack, watchToEnd } from './stack.ts';

const stack = useStack({ env: { STAGELINE_EXECUTOR: 'noop' } });
const sizes = useBusSizes(stack);

describe('the most services and stages an environment may have', () => {
  it('deploys and clones, every message under max_payload', async () => {
    const created = await callUnary(
      stack.environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({ project: 'e2e', name: 'most' }),
    );
    const environmentId = created.environment!.id;
    let stages = created.pipeline!.stages.map((s) => s.id);
    while (stages.length < 32) {
      const req = control.CreateStageRequest.fromPartial({
        environmentId,
        name: `stage ${stages.length}`,
        description: 'd'.repeat(1024),
      });
      stages = (await callUnary(stack.pipelines, 'createStage', req)).pipeline!.stages.map((s) => s.id);
    }
    // 64 services of 7 env vars of 1000 bytes: about 7.4 KB each, the environment near its 512 KiB.
    for (let i = 0; i < 64; i++) {
      const service = control.Service.fromPartial({
        name: `svc-${i}`,
        kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
        stageId: stages[i % stages.length]!,
        source: { $case: 'container', value: { image: 'ghcr.io/example/app', tag: '1', ports: [] } },
        envVars: Array.from({ length: 7 }, (_, k) => ({ key: `V${k}`, value: 'v'.repeat(998), secret: k === 6 })),
      });
      await callUnary(stack.environments, 'addService', { environmentId, service });
    }
    const extra = control.Service.fromPartial({
      name: 'one-more',
      kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
      source: { $case: 'container', value: { image: 'ghcr.io/example/app', tag: '1', ports: [] } },
    });
    await expect(callUnary(stack.environments, 'addService', { environmentId, service: extra })).rejects.toThrow(
      /the number of services in the environment is 65; the limit is 64/,
    );

    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      versions: {},
      environmentId,
      requester: 'e2e',
      forceBuild: false,
    });
    const { final } = await watchToEnd(stack, deployment!.id, 300_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    expect(final.services).toHaveLength(64);
    await callUnary(stack.environments, 'cloneEnvironment', {
      sourceEnvironmentId: environmentId,
      name: 'most-clone',
      preview: false,
    });

    expect(await sizes.atLeast('events.environments', 400_000)).toBeGreaterThan(400_000);
    expect(sizes.largest.get('events.runs') ?? 0).toBeGreaterThan(0);
    for (const [family, bytes] of sizes.largest) expect(bytes, family).toBeLessThan(MAX_PAYLOAD * 0.6);
  });
});
