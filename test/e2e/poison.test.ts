// No run hangs: one job of a run is poisoned (every delivery of it fails as if a dependency were
// down), the worker framework dead-letters it after its last delivery, and the planner fails its
// service with the reason; the run ends FAILED by the failure rules instead of staying RUNNING.
// control, planner and build are the real processes; the deploy worker is the test's own, on the real
// worker framework, so that exactly one job can be poisoned.
import { startWorker, type Worker } from '@stageline/bus';
import { DomainError } from '@stageline/errors';
import { callUnary } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { bus as busv1, control } from '@stageline/proto';
import { afterAll, describe, expect, it } from 'vitest';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, stateName, useStack, watchToEnd } from './stack.ts';

const stack = useStack({ services: ['control', 'planner', 'build'] });
let worker: Worker | undefined;

afterAll(async () => {
  await worker?.stop();
});

describe('a poisoned job', () => {
  it('fails its service with the reason, and the run ends FAILED', async () => {
    worker = await startWorker<busv1.DeployJob>({
      bus: stack.bus,
      role: 'deploy',
      log: createLogger({ service: 'poison-test', level: 'silent' }),
      slots: 4,
      durable: 'deploy-workers',
      // Two deliveries, then the dead-letter stream (production: five).
      maxDeliver: 2,
      decode: (data) => busv1.DeployJob.decode(data),
      identify: (job) => ({
        jobId: job.jobId,
        deploymentId: job.deploymentId,
        serviceId: job.service?.id ?? '',
        attempt: job.attempt,
      }),
      handle: async (job) => {
        if (job.service?.name === 'poisoned') {
          throw new DomainError('UNAVAILABLE', 'poisoned: the runtime never answers');
        }
        return busv1.JobFinished.fromPartial({
          succeeded: true,
          state: control.ServiceState.SERVICE_STATE_DEPLOYED,
          message: 'deployed by the test worker',
        });
      },
    });

    const { environment, pipeline } = await createEnvironment(stack, 'poison');
    const envId = environment!.id;
    const [image = '', tag = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
    const add = (name: string, stage: number) =>
      callUnary(
        stack.environments,
        'addService',
        control.AddServiceRequest.fromPartial({
          environmentId: envId,
          service: {
            name,
            kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
            stageId: pipeline!.stages[stage]!.id,
            source: { $case: 'container', value: { image, tag } },
          },
        }),
      );
    await add('healthy', 2);
    await add('poisoned', 2);
    await add('later', 3);

    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      versions: {},
      environmentId: envId,
      requester: 'poison',
      forceBuild: false,
    });
    const { final } = await watchToEnd(stack, deployment!.id, 240_000);
    expect(runStatusName(final.status)).toBe('FAILED');
    const byName = new Map(final.services.map((s) => [s.name, s]));
    expect(stateName(byName.get('poisoned')!.status)).toBe('DEPLOYMENT_ERROR');
    expect(byName.get('poisoned')!.message).toMatch(
      /the deploy worker gave up on the job: .*poisoned: the runtime never answers/,
    );
    expect(final.message).toContain('poisoned: the runtime never answers');
    expect(stateName(byName.get('healthy')!.status)).toBe('DEPLOYED');
    // The failure rules: nothing new starts after the failure.
    expect(stateName(byName.get('later')!.status)).not.toBe('DEPLOYED');
  });
});
