// The noop deploy executor, for benchmarks only (test/bench): every deploy, stop, restart and delete
// sleeps a set duration and succeeds, reporting the same step and JobFinished as the real handler, so
// the planner's scheduling is exercised exactly while nothing runs. No release is recorded. Selected
// only by STAGELINE_EXECUTOR=noop; never the default.
import { setTimeout as sleep } from 'node:timers/promises';
import { isWorkerStopping } from '@stageline/bus';
import { bus, control } from '@stageline/proto';
import type { JobContext } from '../app/ports.ts';

export interface NoopDeploySettings {
  /** Duration of every deploy job, ms. */
  deployMs: number;
}

function duration(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 3_600_000) throw new Error(`${name}: must be whole milliseconds`);
  return n;
}

/** undefined unless STAGELINE_EXECUTOR=noop. STAGELINE_NOOP_DEPLOY_MS, else STAGELINE_NOOP_MS (default 0). */
export function noopDeploySettings(env: NodeJS.ProcessEnv): NoopDeploySettings | undefined {
  const executor = env.STAGELINE_EXECUTOR ?? '';
  if (executor === '' || executor === 'real') return undefined;
  if (executor !== 'noop') throw new Error(`STAGELINE_EXECUTOR: "${executor}" is not "noop" or "real"`);
  const all = duration(env.STAGELINE_NOOP_MS, 'STAGELINE_NOOP_MS', 0);
  return { deployMs: duration(env.STAGELINE_NOOP_DEPLOY_MS, 'STAGELINE_NOOP_DEPLOY_MS', all) };
}

const { Action, ServiceKind, ServiceState, StepKind, StepOutcome } = control;

function what(job: bus.DeployJob): { kind: control.StepKind; state: control.ServiceState } {
  switch (job.action) {
    case Action.ACTION_STOP:
      return { kind: StepKind.STEP_KIND_STOP, state: ServiceState.SERVICE_STATE_STOPPED };
    case Action.ACTION_RESTART:
      return { kind: StepKind.STEP_KIND_RESTART, state: ServiceState.SERVICE_STATE_RESTARTED };
    case Action.ACTION_DELETE:
      return { kind: StepKind.STEP_KIND_DELETE, state: ServiceState.SERVICE_STATE_DELETED };
    default:
      return {
        kind:
          job.service?.kind === ServiceKind.SERVICE_KIND_LIFECYCLE_JOB
            ? StepKind.STEP_KIND_EXECUTING
            : StepKind.STEP_KIND_DEPLOYMENT,
        state: ServiceState.SERVICE_STATE_DEPLOYED,
      };
  }
}

export async function noopDeployJob(
  settings: NoopDeploySettings,
  job: bus.DeployJob,
  ctx: JobContext,
): Promise<bus.JobFinished> {
  const { kind, state } = what(job);
  // A service may carry its own duration (benchmarks with per-service durations) as a plain env var.
  const own = job.service?.envVars.find((e) => e.key === 'STAGELINE_NOOP_DEPLOY_MS' && !e.secret)?.value;
  const ms = duration(own, 'STAGELINE_NOOP_DEPLOY_MS', settings.deployMs);
  const startedAt = new Date();
  await ctx.stepStarted(kind, `noop deploy (${ms} ms)`);
  const finish = (outcome: control.StepOutcome, message: string) =>
    ctx.stepFinished(control.Step.fromPartial({ kind, startedAt, finishedAt: new Date(), outcome, message }));
  if (ms > 0) {
    try {
      await sleep(ms, undefined, { signal: ctx.signal });
    } catch (e) {
      // Our own shutdown: rethrow so the worker hands the job back; a run cancel: report it.
      if (!ctx.signal.aborted) throw e;
      if (isWorkerStopping(ctx.signal.reason)) throw ctx.signal.reason;
      await finish(StepOutcome.STEP_OUTCOME_CANCELED, 'noop job canceled');
      return bus.JobFinished.fromPartial({
        succeeded: false,
        state: ServiceState.SERVICE_STATE_CANCELED,
        message: 'noop job canceled',
      });
    }
  }
  const message = 'noop deploy: nothing was run';
  await finish(StepOutcome.STEP_OUTCOME_SUCCESS, message);
  return bus.JobFinished.fromPartial({ succeeded: true, state, message });
}
