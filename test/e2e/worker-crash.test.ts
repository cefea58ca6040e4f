import { callUnary, connect } from '@stageline/grpc';
import { control, deploy } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, stateName, useStack, watchToEnd } from './stack.ts';

// kill -9 of a deploy worker that holds jobs: JetStream redelivers them (after the short ack wait set
// here) to another worker process, and the run completes with each service deployed exactly once.

const stack = useStack({ env: { WORKER_ACK_WAIT_MS: '4000' } });

describe('a deploy worker killed while it holds jobs', () => {
  it('hands its jobs to another worker process and the run completes', async () => {
    const { environment, pipeline } = await createEnvironment(stack, 'crash');
    const envId = environment!.id;
    const stageId = pipeline!.stages[2]!.id;
    const [image = '', tag = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const { service } = await callUnary(
        stack.environments,
        'addService',
        control.AddServiceRequest.fromPartial({
          environmentId: envId,
          service: {
            name: `slow-${i}`,
            kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
            stageId,
            source: { $case: 'container', value: { image, tag, ports: [{ port: 8080, public: false }] } },
            // Ready only after a few seconds, so the jobs are in flight when the worker dies.
            envVars: [
              { key: 'EXAMPLE_SCRIPT', value: 'sleep 6; exec /bin/busybox httpd -f -p 8080 -h /www', secret: false },
            ],
            healthCheck: { probe: { $case: 'tcp', value: { port: 8080 } }, periodSeconds: 1 },
            readinessTimeoutSeconds: 120,
          },
        }),
      );
      ids.push(service!.id);
    }
    const first = stack.procs.find((p) => p.name === 'deploy')!;
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      environmentId: envId,
      requester: 'e2e',
      forceBuild: false,
    });
    // Every deploy is running on the only deploy worker.
    for (let i = 0; i < 300; i++) {
      const d = (await callUnary(stack.deployments, 'getDeployment', { deploymentId: deployment!.id })).deployment!;
      if (
        d.services.filter((s) => s.steps.some((st) => st.kind === control.StepKind.STEP_KIND_DEPLOYMENT)).length === 4
      )
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const second = await stack.spawnWorker('deploy');
    first.child.kill('SIGKILL');
    await first.exited;

    const { final } = await watchToEnd(stack, deployment!.id, 240_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    expect(final.services.map((s) => stateName(s.status))).toEqual(['DEPLOYED', 'DEPLOYED', 'DEPLOYED', 'DEPLOYED']);

    // ReleaseService is internal: control is the one that calls it (mutual TLS).
    const releases = connect(deploy.ReleaseServiceClient, second.address, stack.security.service('control'));
    try {
      for (const serviceId of ids) {
        const list = await callUnary(releases, 'listReleases', { serviceId });
        const live = list.releases.filter((r) => r.status === 'DEPLOYED');
        expect(live, `releases of ${serviceId}: ${JSON.stringify(list.releases)}`).toHaveLength(1);
      }
    } finally {
      releases.close();
    }
  });
});
