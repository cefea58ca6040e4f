// An environment's exposure reaches the cluster (issue 27), end to end: set on the environment through
// control, carried by the planner in each deploy job, rendered by the deploy worker into the chart helm
// installs. Kubernetes and helm are the one test double the project allows: `helm` and `kubectl` here
// are scripts that record what they are given (helm copies the chart it is handed, which the worker
// removes once helm returns) and answer like a cluster with a deployed release.
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { afterAll, describe, expect, it } from 'vitest';
import { EXAMPLE_IMAGE, runStatusName, useStack, watchToEnd } from './stack.ts';

const scratch = mkdtempSync(join(tmpdir(), 'stageline-k8s-exposure-'));
const recorded = join(scratch, 'recorded');
const fakeHelm = join(scratch, 'helm');
const fakeKubectl = join(scratch, 'kubectl');
// Fixed scripts of the test's own (no input of anyone's): the worker runs them with a minimal environment.
writeFileSync(
  fakeHelm,
  `#!/bin/sh
mkdir -p '${recorded}'
case "$1" in
  version) echo v3.15.4 ;;
  history) echo '[{"revision":1,"status":"deployed"}]' ;;
  upgrade) cp -r "$4" '${recorded}'/chart-$$ ;;
esac
exit 0
`,
);
writeFileSync(fakeKubectl, '#!/bin/sh\necho "{}"\nexit 0\n');
chmodSync(fakeHelm, 0o755);
chmodSync(fakeKubectl, 0o755);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const CONTEXT = 'e2e-cluster';
const stack = useStack({
  env: { HELM: fakeHelm, KUBECTL: fakeKubectl, STAGELINE_KUBE_CONTEXTS: CONTEXT },
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
