import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import {
  createEnvironment,
  EXAMPLE_IMAGE,
  maxOverlap,
  runStatusName,
  type Stack,
  stageStatusName,
  stateName,
  stepsOf,
  useStack,
  watchToEnd,
} from './stack.ts';

// The pipeline engine end to end: control, planner, build and deploy as processes, on real NATS,
// PostgreSQL, the mirror registry and podman, with the busybox example image.

const stack = useStack({ env: { WORKER_ACK_WAIT_MS: '5000' } });
const { ServiceKind } = control;
const [EXAMPLE_REPO = '', EXAMPLE_TAG = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);

interface Spec {
  name: string;
  stage: number;
  image?: string;
  env?: Record<string, string>;
  skipped?: boolean;
  ports?: number[];
  tcpProbe?: number;
  readinessTimeoutSeconds?: number;
}

async function environment(
  stack: Stack,
  name: string,
  specs: Spec[],
  settings: Partial<control.EnvironmentSettings> = {},
  extraStages = 0,
) {
  const created = await createEnvironment(stack, name, settings);
  const envId = created.environment!.id;
  let stages = created.pipeline!.stages.map((s) => s.id);
  for (let i = 0; i < extraStages; i++) {
    const { pipeline } = await callUnary(
      stack.pipelines,
      'createStage',
      control.CreateStageRequest.fromPartial({ environmentId: envId, name: `extra ${i}` }),
    );
    stages = pipeline!.stages.map((s) => s.id);
  }
  const ids: Record<string, string> = {};
  for (const spec of specs) {
    const [repo = '', tag = ''] = (spec.image ?? EXAMPLE_IMAGE).split(/:(?=[^:/]+$)/);
    const { service } = await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: envId,
        service: {
          name: spec.name,
          kind: ServiceKind.SERVICE_KIND_CONTAINER,
          stageId: stages[spec.stage] ?? '',
          skipped: spec.skipped ?? false,
          source: {
            $case: 'container',
            value: { image: repo, tag, ports: (spec.ports ?? []).map((port) => ({ port, public: false })) },
          },
          envVars: Object.entries(spec.env ?? {}).map(([key, value]) => ({ key, value, secret: false })),
          readinessTimeoutSeconds: spec.readinessTimeoutSeconds ?? 60,
          ...(spec.tcpProbe
            ? { healthCheck: { probe: { $case: 'tcp', value: { port: spec.tcpProbe } }, periodSeconds: 1 } }
            : {}),
        },
      }),
    );
    ids[spec.name] = service!.id;
  }
  return { envId, ids, stages };
}

const deploy = async (envId: string, requester = 'e2e') =>
  (
    await callUnary(stack.deployments, 'deployEnvironment', {
      versions: {},
      environmentId: envId,
      requester,
      forceBuild: false,
    })
  ).deployment!;
const byName = (d: control.Deployment) => Object.fromEntries(d.services.map((s) => [s.name, s]));

/** Total length covered by a set of intervals. */
function unionLength(intervals: { start: number; end: number }[]): number {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  let total = 0;
  let end = Number.NEGATIVE_INFINITY;
  for (const i of sorted) {
    if (i.end <= end) continue;
    total += i.end - Math.max(i.start, end);
    end = i.end;
  }
  return total;
}

describe('pipeline engine', () => {
  it('deploys a 20-service stage with at most 7 deploys in flight, using the parallelism', async () => {
    const specs = Array.from({ length: 20 }, (_, i) => ({
      name: `svc-${i}`,
      stage: 2,
      env: { MESSAGE: `svc ${i}` },
      ports: [8080],
    }));
    const { envId } = await environment(stack, 'wide', specs);
    const started = Date.now();
    const { final } = await watchToEnd(stack, (await deploy(envId)).id, 300_000);
    const wall = Date.now() - started;
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    expect(final.services.every((s) => stateName(s.status) === 'DEPLOYED')).toBe(true);
    const deploys = stepsOf(final, control.StepKind.STEP_KIND_DEPLOYMENT);
    expect(deploys).toHaveLength(20);
    const overlap = maxOverlap(deploys);
    expect(overlap).toBeLessThanOrEqual(7);
    expect(overlap).toBeGreaterThan(1);
    const mirrors = stepsOf(final, control.StepKind.STEP_KIND_MIRROR_IMAGE);
    expect(maxOverlap(mirrors)).toBeLessThanOrEqual(7);
    // Reported, not asserted: how much of the run was orchestration — time inside no work step
    // (queueing steps count as orchestration).
    const work = final.services
      .flatMap((s) => s.steps)
      .filter(
        (st) =>
          st.kind !== control.StepKind.STEP_KIND_BUILD_QUEUEING &&
          st.kind !== control.StepKind.STEP_KIND_DEPLOYMENT_QUEUEING,
      )
      .map((st) => ({ start: st.startedAt!.getTime(), end: st.finishedAt!.getTime() }));
    const runWall = final.finishedAt!.getTime() - final.createdAt!.getTime();
    const covered = unionLength(work);
    console.log(
      `20-service deploy: client wall ${wall} ms, run ${runWall} ms, inside work steps ${covered} ms, orchestration ${runWall - covered} ms (${(((runWall - covered) / runWall) * 100).toFixed(1)}%), max ${overlap} deploys at once`,
    );
  });

  it('max_parallel_deploys 1 deploys one service at a time', async () => {
    const specs = Array.from({ length: 4 }, (_, i) => ({ name: `one-${i}`, stage: 2 }));
    const { envId } = await environment(stack, 'serial', specs, { maxParallelDeploys: 1 });
    const { final } = await watchToEnd(stack, (await deploy(envId)).id);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    expect(maxOverlap(stepsOf(final, control.StepKind.STEP_KIND_DEPLOYMENT))).toBe(1);
  });

  it('follows the skipped rules for DEPLOY, STOP, RESTART and DELETE, and stops in reverse stage order', async () => {
    const { envId, ids } = await environment(stack, 'skipping', [
      { name: 'first', stage: 0 },
      { name: 'lazy', stage: 0, skipped: true },
      { name: 'second', stage: 2 },
    ]);
    const deployed = (await watchToEnd(stack, (await deploy(envId)).id)).final;
    expect(Object.fromEntries(deployed.services.map((s) => [s.name, stateName(s.status)]))).toEqual({
      first: 'DEPLOYED',
      lazy: 'SKIPPED',
      second: 'DEPLOYED',
    });
    // A service-level action works on a skipped service.
    const one = await callUnary(stack.deployments, 'deployService', {
      serviceIds: [],
      environmentId: envId,
      serviceId: ids.lazy!,
      version: '',
      requester: 'e2e',
      forceBuild: false,
    });
    const lazy = (await watchToEnd(stack, one.deployment!.id)).final;
    expect(lazy.services.map((s) => [s.name, stateName(s.status)])).toEqual([['lazy', 'DEPLOYED']]);
    expect(lazy.stages).toHaveLength(1);

    const stop = await callUnary(stack.deployments, 'stopEnvironment', {
      environmentId: envId,
      requester: 'e2e',
      forceBuild: false,
    });
    const stopped = (await watchToEnd(stack, stop.deployment!.id)).final;
    const s = byName(stopped);
    expect(stateName(s.lazy!.status)).toBe('SKIPPED');
    expect([stateName(s.first!.status), stateName(s.second!.status)]).toEqual(['STOPPED', 'STOPPED']);
    const stopOf = (name: string) => s[name]!.steps.find((st) => st.kind === control.StepKind.STEP_KIND_STOP)!;
    // Reverse order: the later stage stopped before the earlier one started stopping.
    expect(stopOf('second').finishedAt!.getTime()).toBeLessThanOrEqual(stopOf('first').startedAt!.getTime());

    const restart = await callUnary(stack.deployments, 'restartEnvironment', {
      environmentId: envId,
      requester: 'e2e',
      forceBuild: false,
    });
    const restarted = byName((await watchToEnd(stack, restart.deployment!.id)).final);
    expect([
      stateName(restarted.first!.status),
      stateName(restarted.lazy!.status),
      stateName(restarted.second!.status),
    ]).toEqual(['RESTARTED', 'SKIPPED', 'RESTARTED']);

    const del = await callUnary(stack.deployments, 'deleteEnvironment', {
      environmentId: envId,
      requester: 'e2e',
      forceBuild: false,
    });
    const deleted = byName((await watchToEnd(stack, del.deployment!.id)).final);
    // DELETE takes skipped services too.
    expect([
      stateName(deleted.first!.status),
      stateName(deleted.lazy!.status),
      stateName(deleted.second!.status),
    ]).toEqual(['DELETED', 'DELETED', 'DELETED']);
  });

  it("streams a run's logs: replayed after the fact, per service", async () => {
    const { envId, ids } = await environment(stack, 'logging', [
      { name: 'chatty', stage: 2, env: { MESSAGE: 'hi' }, ports: [8080] },
    ]);
    const run = await deploy(envId);
    await watchToEnd(stack, run.id);
    const lines: control.LogLine[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = stack.deployments.streamLogs({ deploymentId: run.id, serviceId: ids.chatty!, follow: false });
      call.on('data', (m: control.StreamLogsResponse) => {
        if (m.line) lines.push(m.line);
      });
      call.on('end', resolve);
      call.on('error', reject);
    });
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((l) => l.serviceId === ids.chatty)).toBe(true);
    expect(lines.some((l) => l.step === control.StepKind.STEP_KIND_DEPLOYMENT)).toBe(true);
  });

  it('a missing image in stage 2: stage 2 ERROR, stage 3 CANCELED with nothing deployed', async () => {
    const { envId } = await environment(stack, 'missing', [
      { name: 'base', stage: 0 },
      { name: 'ghost', stage: 1, image: '127.0.0.1:5001/examples/does-not-exist:1' },
      { name: 'top', stage: 2 },
    ]);
    const { final } = await watchToEnd(stack, (await deploy(envId)).id);
    expect(runStatusName(final.status)).toBe('FAILED');
    const s = byName(final);
    expect(stateName(s.ghost!.status)).toBe('BUILD_ERROR');
    expect(stateName(s.top!.status)).toBe('CANCELED');
    expect(final.stages.map((st) => stageStatusName(st.status)).slice(1, 3)).toEqual(['ERROR', 'CANCELED']);
    expect(s.top!.steps.some((st) => st.kind === control.StepKind.STEP_KIND_DEPLOYMENT)).toBe(false);
  });

  it('a container that exits in stage 2: stage 1 DONE, stage 2 ERROR with the exit code, stage 3 CANCELED', async () => {
    const { envId } = await environment(stack, 'crashing', [
      { name: 'base', stage: 0 },
      { name: 'crash', stage: 1, env: { EXAMPLE_SCRIPT: 'echo about to fail; exit 3' } },
      { name: 'top', stage: 2 },
    ]);
    const { final } = await watchToEnd(stack, (await deploy(envId)).id);
    expect(runStatusName(final.status)).toBe('FAILED');
    expect(final.stages.map((st) => stageStatusName(st.status)).slice(0, 3)).toEqual(['DONE', 'ERROR', 'CANCELED']);
    const crash = byName(final).crash!;
    expect(stateName(crash.status)).toBe('DEPLOYMENT_ERROR');
    const step = crash.steps.find((st) => st.kind === control.StepKind.STEP_KIND_DEPLOYMENT)!;
    expect(step.message).toMatch(/code 3/);
    expect(step.message).not.toMatch(/not ready after/);
  });

  it('queues a second request, merges same-action requests of one requester, and cancels a run mid-way', async () => {
    const { envId } = await environment(stack, 'queueing', [
      // Never ready: TCP probe on a port nothing listens on.
      { name: 'slow', stage: 2, tcpProbe: 9999, readinessTimeoutSeconds: 120 },
    ]);
    const first = await deploy(envId, 'alice');
    // Wait until it is deploying, so there is something to cancel.
    for (let i = 0; i < 300; i++) {
      const d = (await callUnary(stack.deployments, 'getDeployment', { deploymentId: first.id })).deployment!;
      if (d.services.some((s) => stateName(s.status) === 'DEPLOYING')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const second = await callUnary(stack.deployments, 'stopEnvironment', {
      environmentId: envId,
      requester: 'bob',
      forceBuild: false,
    });
    expect(runStatusName(second.deployment!.status)).toBe('QUEUED');
    expect(second.deployment!.queuePosition).toBe(1);
    const third = await callUnary(stack.deployments, 'stopEnvironment', {
      environmentId: envId,
      requester: 'bob',
      forceBuild: false,
    });
    expect(third.deployment!.id).toBe(second.deployment!.id);

    await callUnary(stack.deployments, 'cancelDeployment', { deploymentId: first.id });
    const canceled = (await watchToEnd(stack, first.id)).final;
    expect(runStatusName(canceled.status)).toBe('CANCELED');
    expect(stateName(byName(canceled).slow!.status)).toBe('CANCELED');
    // The queued STOP runs next (the canceled first deploy was rolled back: nothing to stop).
    const next = (await watchToEnd(stack, second.deployment!.id)).final;
    expect(runStatusName(next.status)).toBe('SUCCEEDED');
    expect(stateName(byName(next).slow!.status)).toBe('SKIPPED');
  });

  it('a plan marks an image the mirror already holds as a predicted cache hit', async () => {
    // A name of its own: the mirror registry outlives test runs, and would already hold a fixed one.
    const { environment } = await createEnvironment(stack, `predicting-${Date.now().toString(36)}`);
    const environmentId = environment!.id;
    await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId,
        service: {
          name: 'box',
          kind: ServiceKind.SERVICE_KIND_CONTAINER,
          source: { $case: 'container', value: { image: EXAMPLE_REPO, tag: EXAMPLE_TAG, ports: [] } },
        },
      }),
    );
    const mirrorStep = async () => {
      const { deployment } = await callUnary(
        stack.deployments,
        'planDeployment',
        control.PlanDeploymentRequest.fromPartial({ environmentId, action: control.Action.ACTION_DEPLOY }),
      );
      return deployment!.services[0]!.steps.find((s) => s.kind === control.StepKind.STEP_KIND_MIRROR_IMAGE)!;
    };
    const before = await mirrorStep();
    expect(before.outcome).toBe(control.StepOutcome.STEP_OUTCOME_UNSPECIFIED);
    expect(before.message).toMatch(
      new RegExp(`^would copy ${EXAMPLE_REPO}:${EXAMPLE_TAG} \\(sha256:[0-9a-f]{64}\\) to `),
    );

    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      versions: {},
      environmentId,
      requester: 'e2e',
      forceBuild: false,
    });
    const { final } = await watchToEnd(stack, deployment!.id, 120_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');

    const after = await mirrorStep();
    expect(after.outcome).toBe(control.StepOutcome.STEP_OUTCOME_CACHE_HIT);
    expect(after.message).toMatch(/^predicted cache hit: the mirror already has \S+ at sha256:[0-9a-f]{64}$/);
  });
});
