// A rollback on the kubernetes runtime restores the configuration too (issue 15, item 3): the chart
// helm installs for the rollback carries the env value and strategy the target run deployed, not the
// ones configured since. Kubernetes and helm are the one test double the project allows: `helm` and
// `kubectl` here are scripts that record what they are given (helm copies the chart it is handed)
// and answer like a cluster with a deployed release.
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { afterAll, describe, expect, it } from 'vitest';
import { EXAMPLE_IMAGE, runStatusName, useStack, watchToEnd } from './stack.ts';

const scratch = mkdtempSync(join(tmpdir(), 'stageline-k8s-rollback-'));
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

/** Every file of the chart helm was handed last, concatenated. */
function lastChart(): string {
  const charts = readdirSync(recorded)
    .map((name) => join(recorded, name))
    .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs);
  const chart = charts.at(-1);
  if (chart === undefined) throw new Error('helm was handed no chart');
  const files = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? files(join(dir, e.name)) : [readFileSync(join(dir, e.name), 'utf8')],
    );
  return files(chart).join('\n---\n');
}

describe('rollback on kubernetes', () => {
  it('the chart of a rollback carries the env value and strategy the target run deployed', async () => {
    const [repository, tag] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/) as [string, string];
    const { environment, pipeline } = await callUnary(
      stack.environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({
        project: 'e2e',
        name: 'k8s-rollback',
        runtime: 'kubernetes',
        settings: { kubernetesContext: CONTEXT },
      }),
    );
    const environmentId = environment!.id;
    const definition = (message: string, strategy: control.DeploymentStrategyType) =>
      control.Service.fromPartial({
        name: 'web',
        kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
        stageId: pipeline!.stages[2]!.id,
        source: { $case: 'container', value: { image: repository, tag, ports: [{ port: 8080, public: false }] } },
        envVars: [{ key: 'MESSAGE', value: message, secret: false }],
        strategy: { type: strategy },
      });
    const T = control.DeploymentStrategyType;
    const { service } = await callUnary(stack.environments, 'addService', {
      environmentId,
      service: definition('served-before', T.DEPLOYMENT_STRATEGY_TYPE_ROLLING_UPDATE),
    });
    const deploy = async () => {
      const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
        versions: {},
        environmentId,
        requester: 'e2e',
        forceBuild: false,
      });
      return (await watchToEnd(stack, deployment!.id, 180_000)).final;
    };
    const first = await deploy();
    expect(runStatusName(first.status), first.message).toBe('SUCCEEDED');
    expect(lastChart()).toContain('served-before');
    expect(lastChart()).toContain('RollingUpdate');

    await callUnary(stack.environments, 'updateService', {
      environmentId,
      service: { ...definition('served-after', T.DEPLOYMENT_STRATEGY_TYPE_RECREATE), id: service!.id },
    });
    const second = await deploy();
    expect(runStatusName(second.status), second.message).toBe('SUCCEEDED');
    expect(lastChart()).toContain('served-after');
    expect(lastChart()).toContain('Recreate');

    const { deployment } = await callUnary(stack.deployments, 'rollbackEnvironment', {
      environmentId,
      toDeploymentId: first.id,
      requester: 'e2e',
    });
    const back = (await watchToEnd(stack, deployment!.id, 180_000)).final;
    expect(runStatusName(back.status), back.message).toBe('SUCCEEDED');
    const chart = lastChart();
    expect(chart).toContain('served-before');
    expect(chart).not.toContain('served-after');
    expect(chart).toContain('RollingUpdate');
    expect(chart).not.toContain('Recreate');
  }, 240_000);
});
