// The deploy job (services/deploy/README.md): DEPLOY (also REDEPLOY and ROLLBACK: apply this image and
// configuration), STOP, RESTART, DELETE of one service. Every step is reported; the outcome is recorded by
// job id, so a redelivered job answers the same outcome without touching the runtime again.
import { randomBytes } from 'node:crypto';
import { DomainError } from '@stageline/errors';
import { checkKubeContext, checkNamespace, resolveNamespace } from '@stageline/policy';
import { bus, control } from '@stageline/proto';
import { parse, stringify } from 'yaml';
import { type Chart, renderChart, templateContent, templateFileOf } from '../domain/chart.ts';
import { renderCustomChart } from '../domain/custom-chart.ts';
import { RolloutCanceled, RolloutError } from '../domain/failures.ts';
import { environmentKey } from '../domain/names.ts';
import { isJobKind, isLive, liveRelease, type Release, type ReleaseKind, unchangedRelease } from '../domain/release.ts';
import {
  connectionOutputs,
  DATABASE_ENGINES,
  type DatabaseCredentials,
  imageDigest,
  isManagedDatabase,
  type Workload,
  workloadFromJob,
} from '../domain/workload.ts';
import type {
  ChartStore,
  CredentialStore,
  JobContext,
  ManagedDatabases,
  ReleaseChange,
  ReleaseStore,
  Runtime,
  RuntimeContext,
} from './ports.ts';

export interface DeployJobDeps {
  releases: ReleaseStore;
  charts: ChartStore;
  /** Database credentials (container and managed databases). */
  credentials: CredentialStore;
  /** The configured server of MANAGED databases; undefined: none is configured. */
  managed?: ManagedDatabases;
  /** The runtime a job names ("local" or "kubernetes"); undefined for one this process does not run. */
  runtime(name: string): Runtime | undefined;
  /** The kube contexts the operator registered (STAGELINE_KUBE_CONTEXTS); absent: none. */
  kubeContexts?: readonly string[];
  /** Serializes jobs of one service inside this process (a redelivery racing its original). */
  serialize<T>(key: string, work: () => Promise<T>): Promise<T>;
  /**
   * A keyed digest (Secrets.fingerprint): a release's config hash covers its secret values, so it is
   * stored keyed — equal for equal configurations, of no use for checking a guessed secret.
   */
  fingerprint(value: string): string;
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
  return resolveNamespace(job.project, job.environmentName, job.namespace);
}

/**
 * Defence in depth behind control's checks at input: a kubernetes deploy goes only into a namespace the
 * rule allows, with a context the operator registered (STAGELINE_KUBE_CONTEXTS of this service).
 */
function checkTarget(deps: DeployJobDeps, job: bus.DeployJob, runtime: Runtime): void {
  if (runtime.name !== 'kubernetes') return;
  const namespace = namespaceOf(job);
  const bad = checkNamespace(namespace);
  if (bad !== undefined) throw new RolloutError('failed', `namespace ${namespace}: ${bad}`);
  const unregistered = checkKubeContext(deps.kubeContexts ?? [], job.kubernetesContext);
  if (unregistered !== undefined) throw new RolloutError('failed', unregistered);
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
    const managed = isManagedDatabase(job.service);
    switch (job.action) {
      case Action.ACTION_DEPLOY:
      case Action.ACTION_REDEPLOY:
      case Action.ACTION_ROLLBACK:
        return managed ? deployManaged(deps, job, ctx) : deploy(deps, job, ctx);
      case Action.ACTION_STOP:
        return managed ? keepManaged(deps, job, ctx, 'STOP') : stop(deps, job, ctx);
      case Action.ACTION_RESTART:
        return managed ? keepManaged(deps, job, ctx, 'RESTART') : restart(deps, job, ctx);
      case Action.ACTION_DELETE:
        return managed ? dropManaged(deps, job, ctx) : remove(deps, job, ctx);
      default:
        throw new DomainError('INVALID_ARGUMENT', `a deploy job cannot do action ${job.action}`, { field: 'action' });
    }
  });
}

async function record(
  deps: DeployJobDeps,
  ctx: JobContext,
  job: bus.DeployJob,
  result: bus.JobFinished,
  changes: readonly ReleaseChange[],
): Promise<bus.JobFinished> {
  // One live copy: a copy of the job whose worker was paused past its ack wait records nothing.
  await ctx.fence?.();
  await deps.releases.finish(
    { jobId: job.jobId, serviceId: job.service?.id ?? '', action: job.action, result },
    changes,
  );
  return result;
}

function kindOf(job: bus.DeployJob, w: Workload | undefined): ReleaseKind {
  if (job.service?.chart?.source !== undefined) return 'CUSTOM_CHART';
  return w?.kind ?? 'CONTAINER';
}

/** A fresh password: 24 random bytes, URL-safe (it goes into connection URLs). */
function newPassword(): string {
  return randomBytes(24).toString('base64url');
}

/** The name of a database and its role: unique per environment on a shared server, at most 63 bytes. */
function databaseName(environmentId: string, serviceName: string): string {
  return `sl_${environmentKey(environmentId)}_${serviceName.replace(/-/g, '_')}`.slice(0, 63);
}

async function databaseCredentials(deps: DeployJobDeps, job: bus.DeployJob): Promise<DatabaseCredentials> {
  const service = job.service!;
  const name = databaseName(job.environmentId, service.name);
  return deps.credentials.ensure(service.id, job.environmentId, () => ({
    username: name,
    password: newPassword(),
    database: name,
  }));
}

/** `revision:<n>` (a past revision to deploy exactly as it was), else undefined. */
function pastRevision(version: string): number | undefined {
  const m = /^revision:([1-9][0-9]{0,9})$/.exec(version.trim());
  return m === null ? undefined : Number(m[1]);
}

/**
 * A past revision's chart as a new revision: its templates exactly as they were (same config hash),
 * Chart.yaml and values.yaml renumbered; a lifecycle job's Job renamed so it runs again.
 */
function copyChart(source: Release, files: Chart['files'], revision: number): Chart['files'] {
  return files.map((f) => {
    if (f.path === 'Chart.yaml') {
      const chart = parse(f.content) as Record<string, unknown>;
      const annotations = { ...((chart.annotations as Record<string, string>) ?? {}) };
      annotations['stageline.io/revision'] = String(revision);
      annotations['stageline.io/copied-from-revision'] = String(source.revision);
      return { ...f, content: stringify({ ...chart, version: `1.0.${revision}`, annotations }, { lineWidth: 0 }) };
    }
    if (f.path === 'values.yaml') {
      const values = (parse(f.content) as Record<string, unknown>) ?? {};
      return {
        ...f,
        content: `# The inputs of revision ${source.revision}, deployed again as revision ${revision}.\n${stringify({ ...values, revision, copiedFromRevision: source.revision }, { lineWidth: 0 })}`,
      };
    }
    if (f.path === templateFileOf('Job')) {
      const job = parse(f.content.replace(/^#.*\n/, '')) as { metadata: { name: string } };
      job.metadata.name = `${source.serviceName}-${revision}`.slice(0, 63);
      return { ...f, content: templateContent(job) };
    }
    return f;
  });
}

interface Prepared {
  kind: ReleaseKind;
  image: string;
  digest: string;
  version: string;
  readinessTimeoutSeconds: number;
  schedule: string;
  /** The chart of the new revision, once its number is known. */
  chart(revision: number): Promise<{ files: Chart['files']; configHash: string }>;
  /** Values for later stages besides what the runtime reports (a container database's connection). */
  outputs: Record<string, string>;
}

/** The chart with its config hash keyed (64 hex digits: the fingerprint's HMAC, without its key id). */
function keyedHash<C extends { configHash: string }>(deps: DeployJobDeps, chart: C): C {
  return { ...chart, configHash: deps.fingerprint(chart.configHash).slice(-64) };
}

/** Everything about the job that can fail before a revision is taken: a job we can never run fails here. */
async function prepare(deps: DeployJobDeps, job: bus.DeployJob, runtime: Runtime): Promise<Prepared> {
  const service = job.service;
  const past = pastRevision(job.version);
  if (past !== undefined) {
    // DEPLOY of a past revision: exactly what it was, image and configuration (no build ran).
    const source = await deps.releases.get(service?.id ?? '', past);
    if (source === undefined) throw new RolloutError('failed', `revision ${past} does not exist`);
    const files = source.chartPath === '' ? undefined : await deps.charts.read(source.chartPath);
    if (files === undefined || source.image === '') {
      throw new RolloutError('failed', `revision ${past} has no chart any more (the service was deleted since)`);
    }
    return {
      kind: (source.kind || 'CONTAINER') as ReleaseKind,
      image: source.image,
      digest: source.digest,
      version: source.version,
      readinessTimeoutSeconds: source.readinessTimeoutSeconds,
      schedule: source.schedule,
      chart: async (revision) => ({ files: copyChart(source, files, revision), configHash: source.configHash }),
      outputs: {},
    };
  }
  const databaseService =
    service?.kind === control.ServiceKind.SERVICE_KIND_DATABASE && service.source?.$case === 'database'
      ? service.source.value
      : undefined;
  // On kubernetes: the image from the mirror's pull address, its pull secret, the environment's exposure.
  const kubernetes = runtime.kubernetesTarget?.(job.kubernetesContext);
  const target = kubernetes !== undefined ? { kubernetes } : {};
  // Rendering is pure: a chart that cannot be rendered fails here, before a revision is taken.
  const probe = workloadFromJob(job, {
    ...target,
    ...(databaseService ? { database: { username: 'u', password: 'p', database: 'd' } } : {}),
  });
  // The release records the image as the mirror holds it (what a later job names), not as a cluster pulls it.
  const image = job.image.trim();
  const kind = kindOf(job, probe);
  if (kind === 'CUSTOM_CHART') {
    renderCustomChart(job, 1, kubernetes);
    return {
      kind,
      image,
      digest: imageDigest(image),
      version: job.version,
      readinessTimeoutSeconds: probe.readinessTimeoutSeconds,
      schedule: '',
      chart: async (revision) => keyedHash(deps, renderCustomChart(job, revision, kubernetes)),
      outputs: {},
    };
  }
  let credentials: DatabaseCredentials | undefined;
  let outputs: Record<string, string> = {};
  if (databaseService !== undefined) {
    credentials = await databaseCredentials(deps, job);
    const port = DATABASE_ENGINES[databaseService.engine]?.port ?? 0;
    // Reached by its name on the environment's network (local) or its Service (kubernetes).
    outputs = connectionOutputs(probe.name, databaseService.engine, { host: probe.name, port }, credentials);
  }
  const workload = workloadFromJob(job, { ...target, ...(credentials !== undefined ? { database: credentials } : {}) });
  // A job's rollout lasts as long as its executions may (each within its max duration, plus retries).
  const spec = workload.job;
  const timeout =
    spec !== undefined ? spec.maxDurationSeconds * (spec.maxRetries + 1) + 60 : workload.readinessTimeoutSeconds;
  return {
    kind,
    image,
    digest: imageDigest(image),
    version: job.version,
    readinessTimeoutSeconds: timeout,
    schedule: spec?.schedule ?? '',
    chart: async (revision) => keyedHash(deps, renderChart(workload, revision)),
    outputs,
  };
}

/**
 * The chart of the revision asked last, rendered once: the unchanged check renders the next revision's
 * chart to compare its config hash, and the deploy that follows usually takes that same revision.
 */
function rememberLastChart(prepared: Prepared): Prepared {
  let last: { revision: number; chart: ReturnType<Prepared['chart']> } | undefined;
  return {
    ...prepared,
    chart(revision) {
      if (last?.revision !== revision) last = { revision, chart: prepared.chart(revision) };
      return last.chart;
    },
  };
}

/**
 * A DEPLOY that would change nothing (domain `unchangedRelease`: same image digest, configuration and
 * target as the DEPLOYED revision) while that revision still runs and is ready: recorded as done, and its
 * pods are left alone, as Helm and Kubernetes leave the pods of an unchanged spec. RESTART always restarts.
 */
async function leaveUnchanged(
  deps: DeployJobDeps,
  job: bus.DeployJob,
  ctx: JobContext,
  step: StepReporter,
  runtime: Runtime,
  prepared: Prepared,
): Promise<bus.JobFinished | undefined> {
  if (runtime.serving === undefined) return undefined;
  const service = job.service!;
  const history = await deps.releases.history(service.id);
  const current = liveRelease(history);
  if (current === undefined) return undefined;
  const chart = await prepared.chart(current.revision + 1);
  const verdict = unchangedRelease(history, {
    jobId: job.jobId,
    runtime: runtime.name,
    namespace: namespaceOf(job),
    kubeContext: job.kubernetesContext,
    kind: prepared.kind,
    image: prepared.image,
    configHash: chart.configHash,
  });
  if (verdict.live === undefined) return undefined;
  const live = verdict.live;
  const health = await runtime.serving(live, runtimeContext(ctx, step));
  if (!health.ready) {
    step.output(`revision ${live.revision} has this image and configuration but ${health.detail}: applying again`);
    return undefined;
  }
  const message =
    `unchanged: revision ${live.revision} already runs this image and configuration and is ready (${health.detail});` +
    ' its pods were left alone';
  const result = finished(true, ServiceState.SERVICE_STATE_DEPLOYED, message, {
    endpoints: live.endpoints.map((e) => control.Endpoint.fromPartial(e)),
    revision: live.revision,
    outputs: prepared.outputs,
  });
  await record(deps, ctx, job, result, []);
  await step.end(StepOutcome.STEP_OUTCOME_SUCCESS, message);
  return result;
}

async function deploy(deps: DeployJobDeps, job: bus.DeployJob, ctx: JobContext): Promise<bus.JobFinished> {
  const isLifecycle = job.service?.kind === control.ServiceKind.SERVICE_KIND_LIFECYCLE_JOB;
  // A lifecycle job's step is EXECUTING: it runs to completion, it does not serve.
  const step = new StepReporter(deps, ctx, isLifecycle ? StepKind.STEP_KIND_EXECUTING : StepKind.STEP_KIND_DEPLOYMENT);
  const trigger = job.trigger !== Action.ACTION_UNSPECIFIED ? job.trigger : Action.ACTION_DEPLOY;
  const event = trigger === Action.ACTION_STOP ? 'STOP' : trigger === Action.ACTION_DELETE ? 'DELETE' : 'DEPLOY';
  await step.start(
    isLifecycle ? `running ${job.image || '(no image)'} for ${event}` : `deploying ${job.image || '(no image)'}`,
  );

  let prepared: Prepared;
  let runtime: Runtime;
  try {
    if (!job.version.startsWith('revision:') && job.image.trim() === '') {
      throw new RolloutError('failed', 'a DEPLOY job needs the image from the mirror');
    }
    runtime = runtimeOf(deps, job.runtime);
    checkTarget(deps, job, runtime);
    // A runtime that cannot work here (an unsupported helm) fails the job before a revision is taken.
    await runtime.preflight?.(runtimeContext(ctx, step));
    prepared = rememberLastChart(await prepare(deps, job, runtime));
    if (prepared.kind === 'CUSTOM_CHART' && runtime.name !== 'kubernetes') {
      throw new RolloutError(
        'failed',
        `the service names its own Helm chart: only the kubernetes runtime can render it, not ${runtime.name}`,
      );
    }
  } catch (e) {
    if (isRetryable(e)) throw e;
    // A job we can never run: an outcome, not a redelivery.
    const message = errorMessage(e);
    await step.end(StepOutcome.STEP_OUTCOME_ERROR, message);
    return record(deps, ctx, job, finished(false, ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR, message), []);
  }
  const service = job.service!;

  const kept = await leaveUnchanged(deps, job, ctx, step, runtime, prepared);
  if (kept !== undefined) return kept;

  const release = await deps.releases.begin({
    serviceId: service.id,
    serviceName: service.name,
    environmentId: job.environmentId,
    deploymentId: job.deploymentId,
    jobId: job.jobId,
    runtime: runtime.name,
    namespace: namespaceOf(job),
    kubeContext: job.kubernetesContext,
    image: prepared.image,
    digest: prepared.digest,
    version: prepared.version,
    readinessTimeoutSeconds: prepared.readinessTimeoutSeconds,
    kind: prepared.kind,
    schedule: prepared.schedule,
  });
  const history = await deps.releases.history(service.id);
  // A late redelivery of a job whose service has moved on (a later job made a later revision): applying
  // it would put an older revision over a newer one.
  const newer = history.find((r) => r.revision > release.revision);
  if (newer !== undefined) {
    const message = `not applied: revision ${newer.revision} was made after this job's revision ${release.revision}`;
    await step.end(StepOutcome.STEP_OUTCOME_CANCELED, message);
    return record(deps, ctx, job, finished(false, ServiceState.SERVICE_STATE_CANCELED, message), [
      ...(release.status === 'DEPLOYING' ? [{ id: release.id, status: 'SUPERSEDED' as const, message }] : []),
    ]);
  }
  // What serves now (or is stopped): the revision a failure or a cancel returns to.
  const previous = liveRelease(history.filter((r) => r.revision < release.revision));
  // Revisions an earlier crash left mid-rollout (their jobs will not come back: a later job is here).
  const stuck = history.filter((r) => r.status === 'DEPLOYING' && r.id !== release.id && r.revision < release.revision);

  const chart = await prepared.chart(release.revision);
  const chartPath = await deps.charts.write(release, { name: service.name, revision: release.revision, ...chart });
  const current = await deps.releases.setChart(release.id, chartPath, chart.configHash);
  step.output(
    `revision ${current.revision} (${runtime.name}): chart ${chartPath}, config ${chart.configHash.slice(0, 12)}` +
      (previous !== undefined ? `, replacing revision ${previous.revision}` : '') +
      (pastRevision(job.version) !== undefined ? `, exactly as ${job.version}` : ''),
  );

  try {
    const recovered = await runtime.recover(current, previous, stuck, runtimeContext(ctx, step));
    if (recovered !== undefined) step.output(`recovered before the upgrade: ${recovered}`);
    const applied = await runtime.apply(current, runtimeContext(ctx, step));
    const outputs = { ...prepared.outputs, ...(applied.outputs ?? {}) };
    const urls = applied.endpoints.map((e) => e.url).join(', ');
    const jobKind = isJobKind(current.kind);
    let message = jobKind
      ? current.kind === 'CRON_JOB'
        ? `revision ${current.revision} scheduled: "${current.schedule}" (UTC)`
        : `revision ${current.revision} ran to completion for ${event}` +
          (Object.keys(outputs).length > 0 ? `; outputs ${Object.keys(outputs).join(', ')}` : '')
      : `revision ${current.revision} deployed${urls !== '' ? `: ${urls}` : ''}`;
    const superseded = history
      .filter((r) => r.id !== current.id && (isLive(r.status) || r.status === 'DEPLOYING'))
      .map(
        (r): ReleaseChange =>
          stuck.includes(r)
            ? {
                id: r.id,
                status: 'FAILED',
                message: `abandoned mid-rollout; recovered before revision ${current.revision}`,
              }
            : { id: r.id, status: 'SUPERSEDED' },
      );
    let changes: ReleaseChange[] = [
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
      ...superseded,
    ];
    if (isLifecycle && event === 'DELETE') {
      // It ran for the environment's DELETE: what it leaves goes now, as for every other service.
      await runtime.remove(current, runtimeContext(ctx, step, new AbortController().signal));
      await deps.charts.removeService(current.environmentId, current.serviceId);
      message = `${message}; then deleted with the environment`;
      changes = [current, ...history.filter((r) => r.id !== current.id)]
        .filter((r) => r.id === current.id || isLive(r.status) || r.status === 'DEPLOYING')
        .map(
          (r): ReleaseChange => ({
            id: r.id,
            status: 'DELETED',
            message: r.id === current.id ? message : r.message,
            endpoints: [],
            hostPorts: [],
          }),
        );
    }
    const result = finished(true, ServiceState.SERVICE_STATE_DEPLOYED, message, {
      endpoints: applied.endpoints.map((e) => control.Endpoint.fromPartial(e)),
      revision: current.revision,
      outputs,
    });
    await record(deps, ctx, job, result, changes);
    await step.end(StepOutcome.STEP_OUTCOME_SUCCESS, message);
    return result;
  } catch (e) {
    // PostgreSQL or the like was down: leave the release DEPLOYING; the redelivered job resumes it.
    if (isRetryable(e)) throw e;
    if (ctx.signal.aborted && deps.isShutdown?.(ctx.signal.reason)) throw handBack(ctx, step);
    const canceled = e instanceof RolloutCanceled || ctx.signal.aborted;
    const reason = canceled ? 'canceled' : errorMessage(e);
    if (!(e instanceof RolloutError) && !canceled) ctx.log.error({ err: e }, 'deploy failed unexpectedly');
    step.output(`${reason}; ${isJobKind(current.kind) ? 'cleaning up' : 'rolling back'}`);
    const rolledBack = await rollBack(deps, ctx, step, runtime, current, previous);
    const message = `${reason} (${rolledBack})`;
    const result = canceled
      ? finished(false, ServiceState.SERVICE_STATE_CANCELED, message, { revision: current.revision })
      : finished(false, ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR, message, { revision: current.revision });
    await record(deps, ctx, job, result, [{ id: current.id, status: canceled ? 'ROLLED_BACK' : 'FAILED', message }]);
    await step.end(canceled ? StepOutcome.STEP_OUTCOME_CANCELED : StepOutcome.STEP_OUTCOME_ERROR, message);
    return result;
  }
}

// --- MANAGED databases -------------------------------------------------------------------------

function managedServer(deps: DeployJobDeps): ManagedDatabases {
  if (deps.managed === undefined) {
    throw new RolloutError(
      'failed',
      'no PostgreSQL server is configured for MANAGED databases (set MANAGED_POSTGRES_URL on the deploy service)',
    );
  }
  return deps.managed;
}

/** A database and its role on the configured server (MANAGED mode); its connection details are outputs. */
async function deployManaged(deps: DeployJobDeps, job: bus.DeployJob, ctx: JobContext): Promise<bus.JobFinished> {
  const step = new StepReporter(deps, ctx, StepKind.STEP_KIND_DEPLOYMENT);
  await step.start('provisioning a managed PostgreSQL database');
  const service = job.service!;
  let server: ManagedDatabases;
  let endpoint: { host: string; port: number };
  try {
    server = managedServer(deps);
    const runtimeName = job.runtime === '' ? 'local' : job.runtime;
    // Where this runtime's workloads reach the server: podman's gateway is no address inside a cluster.
    const at = server.endpoint(runtimeName);
    if (at === undefined) {
      throw new RolloutError(
        'failed',
        `no address of the managed PostgreSQL server is configured for the ${runtimeName} runtime` +
          (runtimeName === 'kubernetes' ? ' (set MANAGED_POSTGRES_KUBE_HOST on the deploy service)' : ''),
      );
    }
    endpoint = at;
  } catch (e) {
    const message = errorMessage(e);
    await step.end(StepOutcome.STEP_OUTCOME_ERROR, message);
    return record(deps, ctx, job, finished(false, ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR, message), []);
  }
  const credentials = await databaseCredentials(deps, job);
  const release = await deps.releases.begin({
    serviceId: service.id,
    serviceName: service.name,
    environmentId: job.environmentId,
    deploymentId: job.deploymentId,
    jobId: job.jobId,
    runtime: job.runtime === '' ? 'local' : job.runtime,
    namespace: namespaceOf(job),
    kubeContext: job.kubernetesContext,
    image: '',
    digest: '',
    version: job.version,
    readinessTimeoutSeconds: 0,
    kind: 'MANAGED_DATABASE',
  });
  const history = await deps.releases.history(service.id);
  const { host, port } = endpoint;
  try {
    step.output(`database ${credentials.database}, role ${credentials.username} on ${host}:${port}`);
    await server.ensure(credentials);
  } catch (e) {
    if (isRetryable(e)) throw e;
    const message = `provisioning failed: ${errorMessage(e)}`;
    await step.end(StepOutcome.STEP_OUTCOME_ERROR, message);
    return record(
      deps,
      ctx,
      job,
      finished(false, ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR, message, { revision: release.revision }),
      [{ id: release.id, status: 'FAILED', message }],
    );
  }
  const engine = service.source?.$case === 'database' ? service.source.value.engine : 0;
  const outputs = connectionOutputs(service.name, engine, { host, port }, credentials);
  const message = `revision ${release.revision}: database ${credentials.database} ready on ${host}:${port}`;
  const result = finished(true, ServiceState.SERVICE_STATE_DEPLOYED, message, { revision: release.revision, outputs });
  await record(deps, ctx, job, result, [
    { id: release.id, status: 'DEPLOYED', message },
    ...history
      .filter((r) => r.id !== release.id && (isLive(r.status) || r.status === 'DEPLOYING'))
      .map((r): ReleaseChange => ({ id: r.id, status: 'SUPERSEDED' })),
  ]);
  await step.end(StepOutcome.STEP_OUTCOME_SUCCESS, message);
  return result;
}

/** STOP and RESTART of a managed database: its server keeps it as it is (data kept). */
async function keepManaged(
  deps: DeployJobDeps,
  job: bus.DeployJob,
  ctx: JobContext,
  what: 'STOP' | 'RESTART',
): Promise<bus.JobFinished> {
  const step = new StepReporter(deps, ctx, what === 'STOP' ? StepKind.STEP_KIND_STOP : StepKind.STEP_KIND_RESTART);
  await step.start(what === 'STOP' ? 'stopping' : 'restarting');
  const { live } = await liveOf(deps, job.service?.id ?? '');
  const message =
    what === 'STOP'
      ? 'a managed database is kept as it is on STOP (its data stays)'
      : 'a managed database has nothing to restart: it is served by its server';
  await step.end(StepOutcome.STEP_OUTCOME_SUCCESS, message);
  if (what === 'STOP') {
    return record(deps, ctx, job, finished(true, ServiceState.SERVICE_STATE_STOPPED, message), [
      ...(live !== undefined ? [{ id: live.id, status: 'STOPPED' as const }] : []),
    ]);
  }
  return record(deps, ctx, job, finished(true, ServiceState.SERVICE_STATE_RESTARTED, message), [
    ...(live !== undefined ? [{ id: live.id, status: 'DEPLOYED' as const }] : []),
  ]);
}

/** DELETE of a managed database: the database and its role are dropped, its credentials forgotten. */
async function dropManaged(deps: DeployJobDeps, job: bus.DeployJob, ctx: JobContext): Promise<bus.JobFinished> {
  const step = new StepReporter(deps, ctx, StepKind.STEP_KIND_DELETE);
  await step.start('deleting');
  const serviceId = job.service?.id ?? '';
  const { all } = await liveOf(deps, serviceId);
  const credentials = await deps.credentials.get(serviceId);
  try {
    if (credentials !== undefined) {
      step.output(`dropping database ${credentials.database} and role ${credentials.username}`);
      await managedServer(deps).drop(credentials);
      await deps.credentials.remove(serviceId);
    }
  } catch (e) {
    if (isRetryable(e)) throw e;
    const message = `delete failed: ${errorMessage(e)}`;
    await step.end(StepOutcome.STEP_OUTCOME_ERROR, message);
    return record(deps, ctx, job, finished(false, ServiceState.SERVICE_STATE_DELETE_ERROR, message), []);
  }
  const message =
    credentials !== undefined ? `database ${credentials.database} dropped` : 'deleted (nothing was provisioned)';
  const result = await record(
    deps,
    ctx,
    job,
    finished(true, ServiceState.SERVICE_STATE_DELETED, message),
    all
      .filter((r) => isLive(r.status) || r.status === 'DEPLOYING')
      .map((r): ReleaseChange => ({ id: r.id, status: 'DELETED' })),
  );
  await step.end(StepOutcome.STEP_OUTCOME_SUCCESS, message);
  return result;
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
    return record(deps, ctx, job, finished(true, ServiceState.SERVICE_STATE_STOPPED, message), []);
  }
  try {
    // A stop is short and leaves a consistent state: it finishes even when the run is canceled meanwhile.
    await runtimeOf(deps, live.runtime).stop(live, runtimeContext(ctx, step, new AbortController().signal));
  } catch (e) {
    if (isRetryable(e)) throw e;
    const message = `stop failed: ${errorMessage(e)}`;
    await step.end(StepOutcome.STEP_OUTCOME_ERROR, message);
    return record(deps, ctx, job, finished(false, ServiceState.SERVICE_STATE_STOP_ERROR, message), []);
  }
  const message = `revision ${live.revision} stopped (scaled to zero, data kept)`;
  const result = await record(deps, ctx, job, finished(true, ServiceState.SERVICE_STATE_STOPPED, message), [
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
    return record(deps, ctx, job, finished(false, ServiceState.SERVICE_STATE_RESTART_ERROR, message), []);
  }
  try {
    const applied = await runtimeOf(deps, live.runtime).restart(live, runtimeContext(ctx, step));
    const message = `revision ${live.revision} restarted`;
    const result = finished(true, ServiceState.SERVICE_STATE_RESTARTED, message, {
      endpoints: applied.endpoints.map((e) => control.Endpoint.fromPartial(e)),
      revision: live.revision,
    });
    await record(deps, ctx, job, result, [
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
    return record(deps, ctx, job, finished(false, state, message, { revision: live.revision }), []);
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
    kind: '',
    schedule: '',
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
    // A container database's data went with its volume: its credentials go too.
    if (job.service?.id) await deps.credentials.remove(job.service.id);
  } catch (e) {
    if (isRetryable(e)) throw e;
    const message = `delete failed: ${errorMessage(e)}`;
    await step.end(StepOutcome.STEP_OUTCOME_ERROR, message);
    return record(deps, ctx, job, finished(false, ServiceState.SERVICE_STATE_DELETE_ERROR, message), []);
  }
  const message =
    live !== undefined ? `revision ${live.revision} deleted with its data` : 'deleted (nothing was deployed)';
  const result = await record(
    deps,
    ctx,
    job,
    finished(true, ServiceState.SERVICE_STATE_DELETED, message),
    all
      .filter((r) => isLive(r.status) || r.status === 'DEPLOYING')
      .map((r): ReleaseChange => ({ id: r.id, status: 'DELETED', endpoints: [], hostPorts: [] })),
  );
  await step.end(StepOutcome.STEP_OUTCOME_SUCCESS, message);
  return result;
}
