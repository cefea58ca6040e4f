// An environment's exposure reaches the cluster (issue 27), end to end: set on the environment through
// control, carried by the planner in each deploy job, rendered by the deploy worker into the chart helm
// installs. Kubernetes and helm are the one test double the project allows: `helm` and `kubectl` here
// are scripts that record what they are given (helm copies the chart it is handed, which the worker
// removes once helm returns) and answer like a cluster with a deployed release.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { recordingHelmAndKubectl } from './kube-double.ts';
import { EXAMPLE_IMAGE, runStatusName, useStack, watchToEnd } from './stack.ts';

const { recorded, env: kube } = recordingHelmAndKubectl('exposure');

const CONTEXT = 'e2e-cluster';
const stack = useStack({
  env: { ...kube, STAGELINE_KUBE_CONTEXTS: CONTEXT },
});

describe('exposure on kubernetes', () => {
  it("an environment's NodePort exposure reaches the chart helm installs", async () => {
    const [repository, tag] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/) as [string, string];
    const { environment, pipeline } = await callUnary(
      stack.environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({
        project: 'e2e',
        name: 'exposure',
        runtime: 'kubernetes',
        settings: {
          kubernetesContext: CONTEXT,
          exposure: { type: control.ExposureType.EXPOSURE_TYPE_NODE_PORT },
        },
      }),
    );
    await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: environment!.id,
        service: {
          name: 'web',
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          stageId: pipeline!.stages[2]!.id,
          source: { $case: 'container', value: { image: repository, tag, ports: [{ port: 8080, public: true }] } },
        },
      }),
    );
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      versions: {},
      environmentId: environment!.id,
      requester: 'e2e',
      forceBuild: false,
    });
    const { final } = await watchToEnd(stack, deployment!.id, 180_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');

    // What helm was handed: the public Service, of the environment's type, with the public port.
    expect(existsSync(recorded)).toBe(true);
    const charts = readdirSync(recorded);
    expect(charts.length).toBe(1);
    const publicService = join(recorded, charts[0]!, 'templates', 'service-public.yaml');
    expect(existsSync(publicService), 'the chart has no public Service').toBe(true);
    const manifest = readFileSync(publicService, 'utf8');
    expect(manifest).toMatch(/^kind: Service$/m);
    expect(manifest).toMatch(/^ {2}type: NodePort$/m);
    expect(manifest).toMatch(/^ {6}port: 8080$/m);
  });
});
