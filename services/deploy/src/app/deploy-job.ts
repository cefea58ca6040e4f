// The deploy job (DESIGN.md §1, §4): DEPLOY (also REDEPLOY and ROLLBACK: apply this image and configuration),
// STOP, RESTART, DELETE of one service. Every step is reported; the outcome is recorded by job id, so a
// redelivered job answers the same outcome without touching the runtime again.
import { DomainError } from '@stageline/errors';
import { bus, control } from '@stageline/proto';
import { renderChart } from '../domain/chart.ts';
import { RolloutCanceled, RolloutError } from '../domain/failures.ts';
import { defaultNamespace } from '../domain/names.ts';
import { isLive, liveRelease, type Release } from '../domain/release.ts';
import { imageDigest, workloadFromJob } from '../domain/workload.ts';
import type { ChartStore, JobContext, ReleaseChange, ReleaseStore, Runtime, RuntimeContext } from './ports.ts';

export interface DeployJobDeps {
  releases: ReleaseStore;
  charts: ChartStore;
  /** The runtime a job names ("local" or "kubernetes"); undefined for one this process does not run. */
  runtime(name: string): Runtime | undefined;
  /** Serializes jobs of one service inside this process (a redelivery racing its original). */
  serialize<T>(key: string, work: () => Promise<T>): Promise<T>;
  now(): Date;
  /** How long a rollback after a failure or cancel may take before we give up on it (ms). */
  rollbackTimeoutMs?: number;
  /**
   * True when an abort of the job's signal means "this process is stopping" rather than "the run was
   * canceled": then the rollout is left as it is, nothing is recorded, and the job is handed back
   * (UNAVAILABLE) for another process to resume the same revision.
   */
  isShutdown?(reason: unknown): boolean;
}

const { StepKind, StepOutcome, ServiceState, Action } = control;
type StepKind = control.StepKind;
type StepOutcome = control.StepOutcome;
type ServiceState = control.ServiceState;

const DEFAULT_ROLLBACK_TIMEOUT_MS = 10 * 60_000;

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Errors worth a redelivery (a dependency such as PostgreSQL was down): the framework naks them. */
function isRetryable(e: unknown): boolean {
  return e instanceof DomainError && e.retryable;
}

function finished(succeeded: boolean, state: ServiceState, message: string, extra: Partial<bus.JobFinished> = {}) {
  return bus.JobFinished.fromPartial({ succeeded, state, message, ...extra });
}

/** One step: started now, finished by `end` exactly once. */
class StepReporter {
  readonly #ctx: JobContext;
  readonly #deps: DeployJobDeps;
  readonly kind: StepKind;
  #startedAt: Date | undefined;
  constructor(deps: DeployJobDeps, ctx: JobContext, kind: StepKind) {
    this.#deps = deps;
    this.#ctx = ctx;
    this.kind = kind;
  }
  async start(message: string): Promise<void> {
    this.#startedAt = this.#deps.now();
    await this.#ctx.stepStarted(this.kind, message);
    this.#ctx.output(message, this.kind);
  }
  output(line: string): void {
    this.#ctx.output(line, this.kind);
  }
  async end(outcome: StepOutcome, message: string): Promise<void> {
    this.#ctx.output(message, this.kind);
    await this.#ctx.stepFinished(
      control.Step.fromPartial({
        kind: this.kind,
        startedAt: this.#startedAt ?? this.#deps.now(),
        finishedAt: this.#deps.now(),
        outcome,
        message,
      }),
    );
  }
}

function runtimeContext(ctx: JobContext, step: StepReporter, signal: AbortSignal = ctx.signal): RuntimeContext {
  return { signal, output: (line) => step.output(line), working: () => ctx.working() };
}

/** Rollbacks must finish even when the job's own signal was the reason for them. */
function rollbackContext(deps: DeployJobDeps, ctx: JobContext, step: StepReporter): RuntimeContext {
  return runtimeContext(ctx, step, AbortSignal.timeout(deps.rollbackTimeoutMs ?? DEFAULT_ROLLBACK_TIMEOUT_MS));
}

function namespaceOf(job: bus.DeployJob): string {
  return job.namespace !== '' ? job.namespace : defaultNamespace(job.project, job.environmentName);
}

function runtimeOf(deps: DeployJobDeps, name: string): Runtime {
  const runtime = deps.runtime(name === '' ? 'local' : name);
  if (runtime === undefined) throw new RolloutError('failed', `unknown runtime "${name}"`);
  return runtime;
}

export async function handleDeployJob(
  deps: DeployJobDeps,
  job: bus.DeployJob,
  ctx: JobContext,
): Promise<bus.JobFinished> {
  const serviceId = job.service?.id ?? '';
  return deps.serialize(serviceId, async () => {
    const recorded = await deps.releases.findResult(job.jobId);
    if (recorded !== undefined) {
      ctx.log.info({ state: recorded.state }, 'job already finished: answering its recorded outcome');
      return recorded;
    }
    switch (job.action) {
      case Action.ACTION_DEPLOY:
      case Action.ACTION_REDEPLOY:
      case Action.ACTION_ROLLBACK:
        return deploy(deps, job, ctx);
      case Action.ACTION_STOP:
        return stop(deps, job, ctx);
      case Action.ACTION_RESTART:
        return restart(deps, job, ctx);
      case Action.ACTION_DELETE:
        return remove(deps, job, ctx);
      default:
        throw new DomainError('INVALID_ARGUMENT', `a deploy job cannot do action ${job.action}`, { field: 'action' });
    }
  });
}

async function record(
  deps: DeployJobDeps,
  job: bus.DeployJob,
  result: bus.JobFinished,
  changes: readonly ReleaseChange[],
): Promise<bus.JobFinished> {
  await deps.releases.finish(
    { jobId: job.jobId, serviceId: job.service?.id ?? '', action: job.action, result },
    changes,
  );
  return result;
}

async function deploy(deps: DeployJobDeps, job: bus.DeployJob, ctx: JobContext): Promise<bus.JobFinished> {
  const step = new StepReporter(deps, ctx, StepKind.STEP_KIND_DEPLOYMENT);
  await step.start(`deploying ${job.image || '(no image)'}`);

  let workload: ReturnType<typeof workloadFromJob>;
  let runtime: Runtime;
  try {
    workload = workloadFromJob(job);
    runtime = runtimeOf(deps, job.runtime);
    // Rendering is pure: a chart that cannot be rendered fails here, before a revision is taken.
    renderChart(workload, 1);
  } catch (e) {
    // A job we can never run: an outcome, not a redelivery.
    const message = errorMessage(e);
    await step.end(StepOutcome.STEP_OUTCOME_ERROR, message);
    return record(deps, job, finished(false, ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR, message), []);
  }

  const release = await deps.releases.begin({
    serviceId: workload.serviceId,
    serviceName: workload.name,
    environmentId: workload.environmentId,
    deploymentId: job.deploymentId,
    jobId: job.jobId,
    runtime: runtime.name,
    namespace: namespaceOf(job),
    kubeContext: job.kubernetesContext,
    image: workload.image,
    digest: imageDigest(workload.image),
    version: job.version,
    readinessTimeoutSeconds: workload.readinessTimeoutSeconds,
  });
  const history = await deps.releases.history(workload.serviceId);
  // A late redelivery of a job whose service has moved on (a later job made a later revision): applying
  // it would put an older revision over a newer one.
  const newer = history.find((r) => r.revision > release.revision);
  if (newer !== undefined) {
    const message = `not applied: revision ${newer.revision} was made after this job's revision ${release.revision}`;
    await step.end(StepOutcome.STEP_OUTCOME_CANCELED, message);
    return record(deps, job, finished(false, ServiceState.SERVICE_STATE_CANCELED, message), [
      ...(release.status === 'DEPLOYING' ? [{ id: release.id, status: 'SUPERSEDED' as const, message }] : []),
    ]);
  }
  // What serves now (or is stopped): the revision a failure or a cancel returns to.
  const previous = liveRelease(history.filter((r) => r.revision < release.revision));

  const chart = renderChart(workload, release.revision);
  const chartPath = await deps.charts.write(release, chart);
  const current = await deps.releases.setChart(release.id, chartPath, chart.configHash);
  step.output(
    `revision ${current.revision} (${runtime.name}): chart ${chartPath}, config ${chart.configHash.slice(0, 12)}` +
      (previous !== undefined ? `, replacing revision ${previous.revision}` : ''),
  );

  try {
    const applied = await runtime.apply(current, runtimeContext(ctx, step));
    const urls = applied.endpoints.map((e) => e.url).join(', ');
    const message = `revision ${current.revision} deployed${urls !== '' ? `: ${urls}` : ''}`;
    const changes: ReleaseChange[] = [
      {
        id: current.id,
        status: 'DEPLOYED',
        message,
        hostPorts: applied.hostPorts,
        endpoints: applied.endpoints,
        ...(applied.digest !== '' ? { digest: applied.digest } : {}),
        runtimeRevision: applied.runtimeRevision,
      },
      // Everything that was live before is replaced now, and so is a revision abandoned mid-rollout.
      ...history
        .filter((r) => r.id !== current.id && (isLive(r.status) || r.status === 'DEPLOYING'))
        .map((r): ReleaseChange => ({ id: r.id, status: 'SUPERSEDED' })),
    ];
    const result = finished(true, ServiceState.SERVICE_STATE_DEPLOYED, message, {
      endpoints: applied.endpoints.map((e) => control.Endpoint.fromPartial(e)),
      revision: current.revision,
    });
    await record(deps, job, result, changes);
    await step.end(StepOutcome.STEP_OUTCOME_SUCCESS, message);
    return result;
  } catch (e) {
    // PostgreSQL or the like was down: leave the release DEPLOYING; the redelivered job resumes it.
    if (isRetryable(e)) throw e;
    if (ctx.signal.aborted && deps.isShutdown?.(ctx.signal.reason)) throw handBack(ctx, step);
    const canceled = e instanceof RolloutCanceled || ctx.signal.aborted;
    const reason = canceled ? 'canceled' : errorMessage(e);
    if (!(e instanceof RolloutError) && !canceled) ctx.log.error({ err: e }, 'deploy failed unexpectedly');
    step.output(`${reason}; rolling back`);
    const rolledBack = await rollBack(deps, ctx, step, runtime, current, previous);
    const message = `${reason} (${rolledBack})`;
    const result = canceled
      ? finished(false, ServiceState.SERVICE_STATE_CANCELED, message, { revision: current.revision })
      : finished(false, ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR, message, { revision: current.revision });
    await record(deps, job, result, [{ id: current.id, status: canceled ? 'ROLLED_BACK' : 'FAILED', message }]);
    await step.end(canceled ? StepOutcome.STEP_OUTCOME_CANCELED : StepOutcome.STEP_OUTCOME_ERROR, message);
    return result;
  }
}

/** The worker is stopping mid-rollout: another process redoes the job (same release, same revision). */
function handBack(ctx: JobContext, step: StepReporter): DomainError {
  step.output('this worker is stopping: the job goes back to the queue and resumes elsewhere');
  ctx.log.info('worker stopping: job handed back');
  return new DomainError('UNAVAILABLE', 'deploy worker stopping', { retryable: true });
}

/** Returns what happened, for the step message. Never throws: the failure being reported matters more. */
async function rollBack(
  deps: DeployJobDeps,
  ctx: JobContext,
  step: StepReporter,
  runtime: Runtime,
  failed: Release,
  previous: Release | undefined,
): Promise<string> {
  const rctx = rollbackContext(deps, ctx, step);
  try {
    await runtime.rollbackTo(failed, previous, rctx);
    if (previous === undefined) return `revision ${failed.revision} removed: it was the first`;
    if (previous.status === 'STOPPED') {
      // It was stopped before this deploy: it stays stopped.
      await runtime.stop(previous, rctx);
      return `rolled back to revision ${previous.revision}, stopped as it was`;
    }
    return `rolled back: revision ${previous.revision} serves again`;
  } catch (e) {
    ctx.log.error({ err: e }, 'rollback failed');
    return `rollback failed: ${errorMessage(e)}`;
  }
}

/** The release a STOP, RESTART or DELETE acts on: the live one. */
async function liveOf(deps: DeployJobDeps, serviceId: string): Promise<{ live: Release | undefined; all: Release[] }> {
  const all = await deps.releases.history(serviceId);
  return { live: liveRelease(all), all };
}

async function stop(deps: DeployJobDeps, job: bus.DeployJob, ctx: JobContext): Promise<bus.JobFinished> {
  const step = new StepReporter(deps, ctx, StepKind.STEP_KIND_STOP);
  await step.start('stopping');
  const { live } = await liveOf(deps, job.service?.id ?? '');
  if (live === undefined || live.status === 'STOPPED') {
    const message =
      live === undefined ? 'never deployed: nothing to stop' : `revision ${live.revision} already stopped`;
    await step.end(StepOutcome.STEP_OUTCOME_SUCCESS, message);
    return record(deps, job, finished(true, ServiceState.SERVICE_STATE_STOPPED, message), []);
  }
  try {
    // A stop is short and leaves a consistent state: it finishes even when the run is canceled meanwhile.
    await runtimeOf(deps, live.runtime).stop(live, runtimeContext(ctx, step, new AbortController().signal));
  } catch (e) {
    if (isRetryable(e)) throw e;
    const message = `stop failed: ${errorMessage(e)}`;
    await step.end(StepOutcome.STEP_OUTCOME_ERROR, message);
    return record(deps, job, finished(false, ServiceState.SERVICE_STATE_STOP_ERROR, message), []);
  }
  const message = `revision ${live.revision} stopped (scaled to zero, data kept)`;
  const result = await record(deps, job, finished(true, ServiceState.SERVICE_STATE_STOPPED, message), [
    { id: live.id, status: 'STOPPED', endpoints: [] },
  ]);
  await step.end(StepOutcome.STEP_OUTCOME_SUCCESS, message);
  return result;
}

async function restart(deps: DeployJobDeps, job: bus.DeployJob, ctx: JobContext): Promise<bus.JobFinished> {
  const step = new StepReporter(deps, ctx, StepKind.STEP_KIND_RESTART);
  await step.start('restarting');
  const { live } = await liveOf(deps, job.service?.id ?? '');
  if (live === undefined) {
    const message = 'never deployed: nothing to restart';
    await step.end(StepOutcome.STEP_OUTCOME_ERROR, message);
    return record(deps, job, finished(false, ServiceState.SERVICE_STATE_RESTART_ERROR, message), []);
  }
  try {
    const applied = await runtimeOf(deps, live.runtime).restart(live, runtimeContext(ctx, step));
    const message = `revision ${live.revision} restarted`;
    const result = finished(true, ServiceState.SERVICE_STATE_RESTARTED, message, {
      endpoints: applied.endpoints.map((e) => control.Endpoint.fromPartial(e)),
      revision: live.revision,
    });
    await record(deps, job, result, [
      { id: live.id, status: 'DEPLOYED', endpoints: applied.endpoints, hostPorts: applied.hostPorts },
    ]);
    await step.end(StepOutcome.STEP_OUTCOME_SUCCESS, message);
    return result;
  } catch (e) {
    if (isRetryable(e)) throw e;
    if (ctx.signal.aborted && deps.isShutdown?.(ctx.signal.reason)) throw handBack(ctx, step);
    const canceled = e instanceof RolloutCanceled || ctx.signal.aborted;
    const message = canceled ? 'restart canceled' : `restart failed: ${errorMessage(e)}`;
    const state = canceled ? ServiceState.SERVICE_STATE_CANCELED : ServiceState.SERVICE_STATE_RESTART_ERROR;
    await step.end(canceled ? StepOutcome.STEP_OUTCOME_CANCELED : StepOutcome.STEP_OUTCOME_ERROR, message);
    return record(deps, job, finished(false, state, message, { revision: live.revision }), []);
  }
}

/** A stand-in when the service has no release on record: the runtime still removes whatever carries its names. */
function unrecordedRelease(deps: DeployJobDeps, job: bus.DeployJob): Release {
  const now = deps.now();
  return {
    id: '',
    serviceId: job.service?.id ?? '',
    serviceName: job.service?.name ?? '',
    environmentId: job.environmentId,
    revision: 0,
    deploymentId: job.deploymentId,
    jobId: job.jobId,
    runtime: job.runtime === '' ? 'local' : job.runtime,
    namespace: namespaceOf(job),
    kubeContext: job.kubernetesContext,
    image: '',
    digest: '',
    version: '',
    configHash: '',
    chartPath: '',
    status: 'DEPLOYED',
    message: '',
    hostPorts: [],
    endpoints: [],
    readinessTimeoutSeconds: 0,
    runtimeRevision: 0,
    createdAt: now,
    updatedAt: now,
  };
}

async function remove(deps: DeployJobDeps, job: bus.DeployJob, ctx: JobContext): Promise<bus.JobFinished> {
  const step = new StepReporter(deps, ctx, StepKind.STEP_KIND_DELETE);
  await step.start('deleting');
  const { live, all } = await liveOf(deps, job.service?.id ?? '');
  // The newest release knows the runtime, namespace and names; deleting is idempotent, so a release
  // already DELETED (or none) is removed again rather than trusted.
  const target = live ?? all[0] ?? unrecordedRelease(deps, job);
  try {
    if (target.serviceName === '') throw new RolloutError('failed', 'the job names no service');
    await runtimeOf(deps, target.runtime).remove(target, runtimeContext(ctx, step, new AbortController().signal));
    await deps.charts.removeService(target.environmentId, target.serviceId);
  } catch (e) {
    if (isRetryable(e)) throw e;
    const message = `delete failed: ${errorMessage(e)}`;
    await step.end(StepOutcome.STEP_OUTCOME_ERROR, message);
    return record(deps, job, finished(false, ServiceState.SERVICE_STATE_DELETE_ERROR, message), []);
  }
  const message =
    live !== undefined ? `revision ${live.revision} deleted with its data` : 'deleted (nothing was deployed)';
  const result = await record(
    deps,
    job,
    finished(true, ServiceState.SERVICE_STATE_DELETED, message),
    all
      .filter((r) => isLive(r.status) || r.status === 'DEPLOYING')
      .map((r): ReleaseChange => ({ id: r.id, status: 'DELETED', endpoints: [], hostPorts: [] })),
  );
  await step.end(StepOutcome.STEP_OUTCOME_SUCCESS, message);
  return result;
}
