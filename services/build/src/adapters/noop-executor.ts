// The noop build executor, for benchmarks only (test/bench): every mirror and git build sleeps a set
// duration and succeeds, reporting the same steps and JobFinished as the real handlers, so the planner's
// scheduling is exercised exactly while nothing is cloned, built or copied. Selected only by
// STAGELINE_EXECUTOR=noop; never the default.
import { setTimeout as sleep } from 'node:timers/promises';
import { isWorkerStopping, type JobContext } from '@stageline/bus';
import { bus, control } from '@stageline/proto';

export interface NoopBuildSettings {
  /** Duration of a GIT build (BUILD step), ms. */
  buildMs: number;
  /** Duration of a MIRROR job (MIRROR_IMAGE step), ms. */
  mirrorMs: number;
  /** STAGELINE_NOOP_IMAGE (a `localhost/…` image): the image every noop job reports. */
  image?: string;
}

function duration(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 3_600_000) throw new Error(`${name}: must be whole milliseconds`);
  return n;
}

/**
 * undefined unless STAGELINE_EXECUTOR=noop. STAGELINE_NOOP_MS sets every duration (default 0);
 * STAGELINE_NOOP_BUILD_MS and STAGELINE_NOOP_MIRROR_MS override it per kind.
 */
export function noopBuildSettings(env: NodeJS.ProcessEnv): NoopBuildSettings | undefined {
  const executor = env.STAGELINE_EXECUTOR ?? '';
  if (executor === '' || executor === 'real') return undefined;
  if (executor !== 'noop') throw new Error(`STAGELINE_EXECUTOR: "${executor}" is not "noop" or "real"`);
  const all = duration(env.STAGELINE_NOOP_MS, 'STAGELINE_NOOP_MS', 0);
  return {
    buildMs: duration(env.STAGELINE_NOOP_BUILD_MS, 'STAGELINE_NOOP_BUILD_MS', all),
    mirrorMs: duration(env.STAGELINE_NOOP_MIRROR_MS, 'STAGELINE_NOOP_MIRROR_MS', all),
    ...(env.STAGELINE_NOOP_IMAGE?.startsWith('localhost/') ? { image: env.STAGELINE_NOOP_IMAGE } : {}),
  };
}

/** A service may carry its own duration (benchmarks with per-service durations) as a plain env var. */
function serviceDuration(job: bus.BuildJob, name: string, fallback: number): number {
  const v = job.service?.envVars.find((e) => e.key === name && !e.secret)?.value;
  return duration(v, name, fallback);
}

export async function noopBuildJob(
  settings: NoopBuildSettings,
  job: bus.BuildJob,
  ctx: JobContext,
): Promise<bus.JobFinished> {
  const git = job.kind === bus.BuildKind.BUILD_KIND_GIT;
  const kind = git ? control.StepKind.STEP_KIND_BUILD : control.StepKind.STEP_KIND_MIRROR_IMAGE;
  const ms = git
    ? serviceDuration(job, 'STAGELINE_NOOP_BUILD_MS', settings.buildMs)
    : serviceDuration(job, 'STAGELINE_NOOP_MIRROR_MS', settings.mirrorMs);
  const startedAt = new Date();
  await ctx.stepStarted(kind, `noop ${git ? 'build' : 'mirror'} (${ms} ms)`);
  const finish = (outcome: control.StepOutcome, message: string) =>
    ctx.stepFinished(control.Step.fromPartial({ kind, startedAt, finishedAt: new Date(), outcome, message }));
  if (ms > 0) {
    try {
      await sleep(ms, undefined, { signal: ctx.signal });
    } catch (e) {
      // Our own shutdown: rethrow so the worker hands the job back; a run cancel: report it.
      if (!ctx.signal.aborted) throw e;
      if (isWorkerStopping(ctx.signal.reason)) throw ctx.signal.reason;
      await finish(control.StepOutcome.STEP_OUTCOME_CANCELED, 'noop job canceled');
      return bus.JobFinished.fromPartial({
        succeeded: false,
        state: control.ServiceState.SERVICE_STATE_CANCELED,
        message: 'noop job canceled',
      });
    }
  }
  const message = `noop ${git ? 'build' : 'mirror'}: nothing was done`;
  await finish(control.StepOutcome.STEP_OUTCOME_SUCCESS, message);
  const service = job.service?.id ?? 'unknown';
  return bus.JobFinished.fromPartial({
    succeeded: true,
    message,
    // Never pulled: the noop deploy executor does not run anything. STAGELINE_NOOP_IMAGE: an image of the
    // local store instead, for a real deploy host behind noop builders (the multi-host scenario).
    image: settings.image ?? `noop.invalid/${job.project}/${service}:noop@sha256:${'0'.repeat(64)}`,
  });
}
