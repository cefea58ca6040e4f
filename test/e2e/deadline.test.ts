// No run hangs: a job no worker takes (no deploy worker runs here) fails its service once past the
// planner's queue limit (set short), and the run ends FAILED with that reason instead of staying RUNNING.
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, stateName, useStack, watchToEnd } from './stack.ts';

const stack = useStack({ services: ['control', 'planner', 'build'], env: { JOB_QUEUE_LIMIT_MS: '3000' } });

describe('a job no worker takes', () => {
  it('fails its service past the queue limit, and the run ends FAILED', async () => {
    const { environment, pipeline } = await createEnvironment(stack, 'deadline');
    const [image = '', tag = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
    await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: environment!.id,
        service: {
          name: 'orphan',
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          stageId: pipeline!.stages[2]!.id,
          source: { $case: 'container', value: { image, tag } },
        },
      }),
    );
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      versions: {},
      environmentId: environment!.id,
      requester: 'deadline',
      forceBuild: false,
    });
    const { final } = await watchToEnd(stack, deployment!.id, 120_000);
    expect(runStatusName(final.status)).toBe('FAILED');
    expect(stateName(final.services[0]!.status)).toBe('DEPLOYMENT_ERROR');
    expect(final.services[0]!.message).toBe('no deploy worker took the job within 3 s');
  });
});
