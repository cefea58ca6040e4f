// What a benchmark does to the stack, through the public gRPC API only: create environments, request
// runs, read them back, and measure them from their steps.
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import type { BenchStack } from './stack.ts';
import { unionLength } from './stats.ts';

export const EXAMPLE_IMAGE = process.env.EXAMPLE_IMAGE ?? '127.0.0.1:5001/examples/busybox:1.36';

const { ServiceKind, StepKind, DeploymentStatus } = control;

export interface ServiceSpec {
  name: string;
  /** Index into the environment's stages. */
  stage: number;
  /** Plain environment variables (the noop executor reads per-service durations from these). */
  env?: Record<string, string>;
}

export interface EnvSpec {
  project: string;
  name: string;
  /** How many stages the environment needs (a new one has 4; more are created at the end). */
  stages: number;
  services: ServiceSpec[];
  settings?: Partial<control.EnvironmentSettings>;
}

export interface CreatedEnv {
  id: string;
  name: string;
  stageIds: string[];
  serviceIds: string[];
}

/** Runs `work` over `items` with at most `limit` at once, keeping the results in order. */
export async function pool<T, R>(items: readonly T[], limit: number, work: (item: T, i: number) => Promise<R>) {
  const results = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      for (;;) {
        const i = next++;
        if (i >= items.length) return;
        results[i] = await work(items[i]!, i);
      }
    }),
  );
  return results;
}

export async function createEnvironment(stack: BenchStack, spec: EnvSpec): Promise<CreatedEnv> {
  const created = await callUnary(
    stack.environments,
    'createEnvironment',
    control.CreateEnvironmentRequest.fromPartial({
      project: spec.project,
      name: spec.name,
      runtime: 'local',
      settings: spec.settings ?? {},
    }),
  );
  const id = created.environment!.id;
  let stageIds = created.pipeline!.stages.map((s) => s.id);
  for (let i = stageIds.length; i < spec.stages; i++) {
    const { pipeline } = await callUnary(
      stack.pipelines,
      'createStage',
      control.CreateStageRequest.fromPartial({ environmentId: id, name: `stage ${i}` }),
    );
    stageIds = pipeline!.stages.map((s) => s.id);
  }
  const [repo = '', tag = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
  const serviceIds: string[] = [];
  for (const s of spec.services) {
    const { service } = await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: id,
        service: {
          name: s.name,
          kind: ServiceKind.SERVICE_KIND_CONTAINER,
          stageId: stageIds[s.stage] ?? '',
          source: { $case: 'container', value: { image: repo, tag, ports: [] } },
          envVars: Object.entries(s.env ?? {}).map(([key, value]) => ({ key, value, secret: false })),
        },
      }),
    );
    serviceIds.push(service!.id);
  }
  return { id, name: spec.name, stageIds, serviceIds };
}

export type RunAction = 'deploy' | 'redeploy';

/** Requests a run of the whole environment; returns its id and when the request was sent. */
export async function requestRun(
  stack: BenchStack,
  environmentId: string,
  action: RunAction = 'deploy',
  forceBuild = false,
): Promise<{ id: string; requestedAt: number }> {
  const requestedAt = Date.now();
  const method = action === 'deploy' ? 'deployEnvironment' : 'redeployEnvironment';
  const response = await callUnary(stack.deployments, method, {
    environmentId,
    versions: {},
    requester: 'bench',
    forceBuild,
  });
  return { id: response.deployment!.id, requestedAt };
}

export async function getRun(stack: BenchStack, deploymentId: string): Promise<control.Deployment> {
  const { deployment } = await callUnary(stack.deployments, 'getDeployment', { deploymentId });
  return deployment!;
}

export interface FinishedRun {
  run: control.Deployment;
  requestedAt: number;
  /** When the benchmark saw the terminal event. */
  seenAt: number;
}

/** Requests a run, waits for its end, reads it back, and fails loudly unless it succeeded. */
export async function deployAndWait(
  stack: BenchStack,
  environmentId: string,
  options: { action?: RunAction; timeoutMs?: number; forceBuild?: boolean } = {},
): Promise<FinishedRun> {
  const { id, requestedAt } = await requestRun(stack, environmentId, options.action, options.forceBuild);
  const seen = await stack.runs.wait(id, options.timeoutMs ?? 600_000);
  const run = await getRun(stack, id);
  assertSucceeded(run);
  return { run, requestedAt, seenAt: seen.at };
}

export function assertSucceeded(run: control.Deployment): void {
  if (run.status !== DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED) {
    throw new Error(
      `run ${run.id} ended ${control.deploymentStatusToJSON(run.status)}: ${run.message || '(no message)'}`,
    );
  }
}

export interface Interval {
  start: number;
  end: number;
  serviceId: string;
  stageId: string;
}

const WORK_KINDS = new Set<control.StepKind>([
  StepKind.STEP_KIND_GIT_CLONE,
  StepKind.STEP_KIND_BUILD,
  StepKind.STEP_KIND_MIRROR_IMAGE,
  StepKind.STEP_KIND_DEPLOYMENT,
  StepKind.STEP_KIND_EXECUTING,
  StepKind.STEP_KIND_STOP,
  StepKind.STEP_KIND_RESTART,
  StepKind.STEP_KIND_DELETE,
]);

/** Every finished step of the given kinds in a run, as intervals. */
export function stepsOf(run: control.Deployment, kinds: readonly control.StepKind[]): Interval[] {
  return run.services.flatMap((s) =>
    s.steps
      .filter((st) => kinds.includes(st.kind) && st.startedAt && st.finishedAt)
      .map((st) => ({
        start: st.startedAt!.getTime(),
        end: st.finishedAt!.getTime(),
        serviceId: s.serviceId,
        stageId: s.stageId,
      })),
  );
}

/** Steps in which a worker did (or, with the noop executor, slept through) the work. */
export const workSteps = (run: control.Deployment) => stepsOf(run, [...WORK_KINDS]);
export const buildSteps = (run: control.Deployment) =>
  stepsOf(run, [StepKind.STEP_KIND_BUILD, StepKind.STEP_KIND_MIRROR_IMAGE]);
export const deploySteps = (run: control.Deployment) =>
  stepsOf(run, [StepKind.STEP_KIND_DEPLOYMENT, StepKind.STEP_KIND_EXECUTING]);

export const ms = (d: Date | undefined): number => d?.getTime() ?? Number.NaN;

/** Per service, the time spent in each step kind (ms), e.g. { api: { BUILD: 1200, DEPLOYMENT: 900 } }. */
export function stepBreakdown(run: control.Deployment): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const s of run.services) {
    const steps: Record<string, number> = {};
    for (const st of s.steps) {
      if (!st.startedAt || !st.finishedAt) continue;
      const kind = control.stepKindToJSON(st.kind).replace('STEP_KIND_', '');
      steps[kind] = (steps[kind] ?? 0) + (st.finishedAt.getTime() - st.startedAt.getTime());
    }
    out[s.name] = steps;
  }
  return out;
}

/**
 * The share of a run (created → finished, planner clock) during which no work step was running anywhere:
 * queueing for a worker, dispatch, reports, stage hand-overs — the time Stageline itself takes.
 */
export function orchestrationShare(run: control.Deployment): number {
  const wall = ms(run.finishedAt) - ms(run.createdAt);
  return wall > 0 ? (wall - unionLength(workSteps(run))) / wall : Number.NaN;
}
