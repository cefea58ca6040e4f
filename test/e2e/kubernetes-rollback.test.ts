// A rollback on the kubernetes runtime restores the configuration too (issue 15, item 3): the chart
// helm installs for the rollback carries the env value and strategy the target run deployed, not the
// ones configured since. Kubernetes and helm are the one test double the project allows: `helm` and
// `kubectl` here are scripts that record what they are given (helm copies the chart it is handed)
// and answer like a cluster with a deployed release.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { recordingHelmAndKubectl } from './kube-double.ts';
import { EXAMPLE_IMAGE, runStatusName, useStack, watchToEnd } from './stack.ts';

const { recorded, env: kube } = recordingHelmAndKubectl('rollback');

const CONTEXT = 'e2e-cluster';
const stack = useStack({
  env: { ...kube, STAGELINE_KUBE_CONTEXTS: CONTEXT },
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
