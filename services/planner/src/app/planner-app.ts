import type { Subjects } from '@stageline/bus';
import { type Database, type EntityManager, enqueue, newId } from '@stageline/db';
import { DomainError, failedPrecondition, invalidArgument, notFound } from '@stageline/errors';
import type { Logger } from '@stageline/log';
import { type build, bus, control, type snapshot } from '@stageline/proto';
import { inSpan } from '@stageline/telemetry';
import { DeploymentRow, RequestKeyRow, ServiceStatusRow } from '../adapters/db/entities.ts';
import {
  environmentOfRun,
  lockLane,
  type RunRecord,
  readRun,
  serviceOutputs,
  serviceResources,
  writeProgress,
} from '../adapters/db/run-sql.ts';
import type { Decision, RunOptions, RunRequest, RunState, ServiceRun } from '../domain/model.ts';
import { isTerminalRun } from '../domain/model.ts';
import { activeEnvironmentStatus, standingAfterRun } from '../domain/outcomes.ts';
import { expectedDurations, expectedSteps, planRun } from '../domain/plan.ts';
import { admit, nextToStart, type OpenRun, queueStanding } from '../domain/queue.ts';
import { advance, applyJobFact, injectedEnv, type JobFact, requestCancel } from '../domain/schedule.ts';
import { runTransitions } from '../domain/transitions.ts';
import { type DeadlineLimits, overdueJobs, PLANNER_FAILURE_SEQUENCE } from './deadlines.ts';
import { RunLog } from './run-log.ts';
import {
  checkVersions,
  definitionsOfRun,
  explainRollback,
  optionsOf,
  resumed,
  resumedRun,
  resumeRequest,
  unsafeToResume,
} from './runs-further.ts';
import {
  actionName,
  actionValue,
  type CurrentRow,
  deploymentView,
  factsFrom,
  type Standing,
  serviceStateName,
  stepKindName,
  stepOutcomeName,
} from './wire.ts';

// The request queue and the runs. Every change to an environment's runs happens in one transaction
// holding that environment's lane lock: load facts, let the pure core decide, write the run, its jobs
// and its events (outbox) together. Re-running on the same facts decides nothing new.

export interface PlannerAppDeps {
  db: Database;
  subjects: Subjects;
  /** Control's SnapshotService: the environment as a run needs it, secrets included. */
  snapshot(environmentId: string): Promise<snapshot.GetEnvironmentSnapshotResponse>;
  /** Tells every worker to stop the jobs of a run (core NATS). */
  publishCancel(deploymentId: string): void;
  /** Wakes the outbox relay after a commit. */
  onCommit(): void;
  /**
   * The build service's dry run of build and mirror jobs (BuildService/PredictBuilds): a plan marks
   * predicted cache hits with it. Optional: without it (or when it fails) a plan says so and goes on.
   */
  predictBuilds?(jobs: bus.BuildJob[]): Promise<build.BuildPrediction[]>;
  log: Logger;
  now?: () => number;
  /** This planner process (`<host name>:<pid>`), written into each run event it makes. */
  instance?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const OPEN = ['QUEUED', 'RUNNING', 'CANCELING'];
const ACTIVE = ['RUNNING', 'CANCELING'];

/**
 * A service naming its own Helm chart that this request would deploy on the `local` runtime, which
 * has no helm to render charts: its name, so the request is refused before anything starts.
 */
function customChartOnLocal(snap: Snapshot, action: string, serviceIds: readonly string[]): string | undefined {
  if (snap.environment.runtime === 'kubernetes') return undefined;
  if (action !== 'DEPLOY' && action !== 'REDEPLOY' && action !== 'ROLLBACK') return undefined;
  const targets =
    serviceIds.length > 0
      ? snap.services.filter((s) => serviceIds.includes(s.id))
      : snap.services.filter((s) => !s.skipped);
  return targets.find((s) => s.chart?.source !== undefined)?.name;
}

function refuseCustomChart(name: string, runtime: string): DomainError {
  return failedPrecondition(
    `service "${name}" names its own Helm chart, which only the kubernetes runtime can deploy; ` +
      `this environment runs on "${runtime || 'local'}"`,
    'service.chart',
  );
}

function parseVersion(version: string, field = 'version'): void {
  if (version === '') return;
  const m = /^(?:(commit|tag|revision):)?(.+)$/.exec(version);
  const kind = m?.[1];
  const value = m?.[2] ?? '';
  const ok =
    kind === 'commit'
      ? /^[0-9a-f]{7,64}$/.test(value)
      : kind === 'revision'
        ? /^[1-9][0-9]{0,9}$/.test(value)
        : /^[\w][\w.-]{0,127}$/.test(value);
  if (!ok) throw invalidArgument(field, 'must be commit:<sha>, tag:<tag>, revision:<n> or a bare commit or tag');
}

interface Snapshot {
  environment: control.Environment;
  pipeline?: control.Pipeline | undefined;
  services: control.Service[];
}

export class PlannerApp {
  readonly #deps: PlannerAppDeps;
  readonly #now: () => number;
  /** Run id → its environment, for runs in progress. */
  readonly #environments = new Map<string, string>();
  /** Run starts, stage changes and ends: logged and counted once committed. */
  readonly #runLog: RunLog;

  constructor(deps: PlannerAppDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    this.#runLog = new RunLog(deps.log);
  }

  // --- requests ---------------------------------------------------------------------------------

  /** One request becomes exactly one run (or joins a queued one); the same request_id twice is one run. */
  async submit(request: bus.ActionRequested, resuming?: RunOptions): Promise<control.Deployment> {
    if (request.cancelDeploymentId !== '') return this.cancel(request.cancelDeploymentId);
    if (request.resumeDeploymentId !== '') return this.#resume(request);
    const action = actionName(request.action);
    if (!action) throw invalidArgument('action', 'is required: DEPLOY, REDEPLOY, STOP, RESTART, DELETE or ROLLBACK');
    if (request.requestId === '' || request.requestId.length > 256)
      throw invalidArgument('request_id', 'is required (at most 256 characters)');
    if (!UUID.test(request.environmentId)) throw invalidArgument('environment_id', 'must be an environment id');
    const serviceIds = [...new Set(request.serviceIds)];
    if (serviceIds.some((id) => !UUID.test(id))) throw invalidArgument('service_ids', 'must be service ids');
    parseVersion(request.version);
    if (request.version !== '' && serviceIds.length !== 1)
      throw invalidArgument('version', 'needs exactly one target service (several: versions, per service)');
    if (action === 'ROLLBACK') {
      if (serviceIds.length > 0) throw invalidArgument('service_ids', 'ROLLBACK applies to the whole environment');
      if (!UUID.test(request.toDeploymentId)) throw invalidArgument('to_deployment_id', 'must be the id of a past run');
    }

    const known = await this.#byRequestId(request.requestId);
    if (known) return known;

    const snap = await this.#snapshot(request.environmentId);
    if (snap.environment.status === control.EnvironmentStatus.ENVIRONMENT_STATUS_DELETED) {
      throw failedPrecondition('the environment is deleted');
    }
    for (const id of serviceIds) {
      if (!snap.services.some((s) => s.id === id)) throw notFound('service', id, 'service_ids');
    }
    checkVersions(request.versions, action, snap, parseVersion);
    const charted = customChartOnLocal(snap, action, serviceIds);
    if (charted !== undefined) throw refuseCustomChart(charted, snap.environment.runtime);
    const options = { ...optionsOf(request, action), ...resuming };

    const result = await this.#inLane(request.environmentId, async (em, deleted) => {
      const again = await em.findOne(RequestKeyRow, { requestId: request.requestId });
      if (again) return { id: again.deploymentId, merged: false };
      if (deleted) throw failedPrecondition('the environment is deleted');
      const open = await em.find(
        DeploymentRow,
        { environmentId: request.environmentId, status: { $in: OPEN } },
        { orderBy: { createdAt: 'asc' } },
      );
      const admission = admit(open.map(openRunOf), {
        ...request,
        action,
        serviceIds,
        ...(options.versions ? { versions: options.versions } : {}),
        ...(options.resumeOf ? { resumeOf: options.resumeOf } : {}),
      });
      if (admission.type === 'refuse') {
        throw failedPrecondition('a DELETE of this environment is queued or running');
      }
      if (action === 'ROLLBACK') {
        const target = await em.findOne(DeploymentRow, { id: request.toDeploymentId });
        if (!target || target.environmentId !== request.environmentId) {
          throw notFound('deployment', request.toDeploymentId, 'to_deployment_id');
        }
        if (target.status !== 'SUCCEEDED') {
          throw failedPrecondition(
            `can only roll back to a run that succeeded; that one ${target.status}`,
            'to_deployment_id',
          );
        }
      }
      // A queued request of the same action, requester, version and scope absorbs this one.
      const mergeInto = admission.type === 'merge' ? open.find((r) => r.id === admission.into) : undefined;
      let row: DeploymentRow;
      if (mergeInto && admission.type === 'merge') {
        row = mergeInto;
        row.serviceIds = admission.serviceIds;
        row.forceBuild = admission.forceBuild;
      } else {
        row = em.create(DeploymentRow, {
          id: newId(),
          environmentId: request.environmentId,
          action,
          status: 'QUEUED',
          requester: request.requester,
          serviceIds,
          version: request.version,
          forceBuild: request.forceBuild,
          toDeploymentId: action === 'ROLLBACK' ? request.toDeploymentId : null,
          options,
          state: null,
          snapshot: null,
          message: '',
          eventSequence: 0,
          createdAt: new Date(this.#now()),
          startedAt: null,
          finishedAt: null,
        });
      }
      em.create(RequestKeyRow, { requestId: request.requestId, deploymentId: row.id });
      await this.#runEvent(em, row);
      return { id: row.id, merged: mergeInto !== undefined };
    });
    this.#deps.onCommit();
    this.#runLog.tell();
    await this.kick(request.environmentId);
    const deployment = await this.getDeployment(result.id);
    return result.merged ? { ...deployment, merged: true } : deployment;
  }

  /** A resume: the request it repeats (app/runs-further.ts), submitted as any other. */
  async #resume(request: bus.ActionRequested): Promise<control.Deployment> {
    if (request.requestId === '' || request.requestId.length > 256)
      throw invalidArgument('request_id', 'is required (at most 256 characters)');
    if (!UUID.test(request.environmentId)) throw invalidArgument('environment_id', 'must be an environment id');
    const known = await this.#byRequestId(request.requestId);
    if (known) return known;
    const snap = await this.#snapshot(request.environmentId);
    const resolved = await this.#deps.db.retry('reading the run to resume', (em) => resumeRequest(em, request, snap));
    return this.submit({ ...resolved.request, resumeDeploymentId: '' }, resolved.options);
  }

  async cancel(deploymentId: string): Promise<control.Deployment> {
    if (!UUID.test(deploymentId)) throw notFound('deployment', deploymentId, 'deployment_id');
    const existing = await this.#deps.db.retry('reading a run', (em) =>
      em.findOne(DeploymentRow, { id: deploymentId }),
    );
    if (!existing) throw notFound('deployment', deploymentId, 'deployment_id');
    let cancelJobs = false;
    let finished = false;
    await this.#inLane(existing.environmentId, async (em) => {
      const row = await em.findOneOrFail(DeploymentRow, { id: deploymentId });
      if (row.status === 'QUEUED') {
        row.status = 'CANCELED';
        row.finishedAt = new Date(this.#now());
        finished = true;
      } else if (row.state && !isTerminalRun(row.state.status)) {
        const canceled = requestCancel(row.state);
        cancelJobs = canceled.decisions.some((d) => d.type === 'cancelJobs');
        finished = await this.#apply(em, row, canceled.state);
      } else {
        return;
      }
      await this.#runEvent(em, row);
      if (finished && row.startedAt === null) await this.#queueMoved(em, row.environmentId, row.id);
    });
    this.#deps.onCommit();
    this.#runLog.tell();
    if (cancelJobs) this.#deps.publishCancel(deploymentId);
    if (finished) await this.kick(existing.environmentId);
    return this.getDeployment(deploymentId);
  }

  // --- job results ----------------------------------------------------------------------------

  /**
   * Events of one run, in stream order, applied in one transaction: every fact folded into the run
   * state, then one scheduling step and one run event — what applying them one by one would decide,
   * for one write instead of one per event. Events of other runs are ignored (callers group by run).
   */
  async onJobEvents(events: readonly bus.JobEvent[]): Promise<void> {
    const deploymentId = events[0]?.deploymentId ?? '';
    if (!UUID.test(deploymentId)) return;
    const now = this.#now();
    const facts = events
      .filter((e) => e.deploymentId === deploymentId)
      .map((e) => toFact(e, now))
      .filter((f) => f !== undefined);
    if (facts.length === 0) return;
    // Only the environment (for its lane; it never changes): the row is read under the lock.
    const environmentId = await this.#environmentOf(deploymentId);
    if (environmentId === undefined) return;
    let finished = false;
    await this.#inLane(environmentId, async (em, deleted) => {
      const run = await readRun(em, deploymentId);
      if (!run?.state) return;
      const before = run.state;
      const next = facts.reduce(applyJobFact, before);
      if (next === before) return;
      finished = await this.#apply(em, run, next);
      await this.#runEvent(em, run, { deleted, before, write: () => writeProgress(em, run) });
    });
    this.#deps.onCommit();
    this.#runLog.tell();
    if (finished) {
      this.#environments.delete(deploymentId);
      // The reports are applied whatever happens next: a queued run that cannot start now (control
      // away) is started by the next sweep (kickAll), not by redelivering reports that change nothing.
      await this.kick(environmentId).catch((e: unknown) =>
        this.#deps.log.warn({ err: e, environmentId }, 'could not start the next queued run: the sweep will'),
      );
    }
  }

  /** The environment of a run, remembered: every report of a run needs it before it takes the lane. */
  async #environmentOf(deploymentId: string): Promise<string | undefined> {
    const known = this.#environments.get(deploymentId);
    if (known !== undefined) return known;
    const found = await this.#deps.db.retry("reading a run's environment", (em) => environmentOfRun(em, deploymentId));
    if (found === undefined) return undefined;
    // Runs end and are forgotten; a bound keeps a planner that misses their ends from growing.
    if (this.#environments.size >= 10_000) this.#environments.clear();
    this.#environments.set(deploymentId, found);
    return found;
  }

  /**
   * No run hangs: every job of a running run that is past its deadline (app/deadlines.ts) gets a failed
   * result with the reason, and its run goes on by the failure rules. Safe to call any time (a late
   * worker's result for such a job changes nothing). Returns how many jobs were failed.
   */
  async expireOverdueJobs(limits?: DeadlineLimits): Promise<number> {
    const rows = await this.#deps.db.retry('reading running runs', (em) =>
      em.find(DeploymentRow, { status: { $in: ACTIVE } }),
    );
    let failed = 0;
    for (const row of rows) {
      if (!row.state) continue;
      const services = (row.snapshot as { services?: { id?: string }[] } | null)?.services ?? [];
      const serviceOf = (id: string) => {
        const json = services.find((s) => s.id === id);
        return json === undefined ? undefined : control.Service.fromJSON(json);
      };
      const overdue = overdueJobs(row.state, serviceOf, this.#now(), limits);
      if (overdue.length === 0) continue;
      for (const o of overdue) {
        this.#deps.log.warn({ deploymentId: row.id, ...o }, 'job past its deadline: its service fails');
      }
      await this.onJobEvents(
        overdue.map((o) =>
          bus.JobEvent.fromPartial({
            jobId: o.jobId,
            deploymentId: row.id,
            serviceId: o.serviceId,
            sequence: PLANNER_FAILURE_SEQUENCE,
            event: {
              $case: 'jobFinished',
              value: bus.JobFinished.fromPartial({ succeeded: false, message: o.reason }),
            },
          }),
        ),
      );
      failed += overdue.length;
    }
    return failed;
  }

  // --- the queue ------------------------------------------------------------------------------

  /** Starts the environment's next queued run if none is running. Safe to call any time, any number of times. */
  async kick(environmentId: string): Promise<void> {
    for (;;) {
      const next = await this.#deps.db.retry("reading an environment's queue", async (em) => {
        const open = await em.find(DeploymentRow, { environmentId, status: { $in: OPEN } });
        const id = nextToStart(open.map(openRunOf));
        return open.find((r) => r.id === id);
      });
      if (!next) return;
      let snap: Snapshot | undefined;
      try {
        snap = await this.#snapshot(environmentId);
      } catch (e) {
        if (!(e instanceof DomainError && e.code === 'NOT_FOUND')) throw e;
      }
      let finished = false;
      await this.#inLane(environmentId, async (tx) => {
        if ((await tx.count(DeploymentRow, { environmentId, status: { $in: ACTIVE } })) > 0) return;
        const row = await tx.findOne(DeploymentRow, { id: next.id });
        if (row?.status !== 'QUEUED') return;
        const charted = snap && customChartOnLocal(snap, row.action, row.serviceIds);
        // A resume that waited: the environment may have changed unsafely since it was accepted.
        const previous = snap && (await resumedRun(tx, row.options));
        const unsafe = snap && previous && unsafeToResume(previous, snap);
        if (!snap || charted !== undefined || unsafe) {
          // Nothing has started: the run ends before its first job.
          row.status = 'FAILED';
          row.message = !snap
            ? 'the environment no longer exists'
            : unsafe || refuseCustomChart(charted ?? '', snap.environment.runtime).message;
          row.finishedAt = new Date(this.#now());
          finished = true;
        } else {
          const state = await this.#planFor(tx, row, snap);
          // A rollback deploys each service it restores as its target run did: image and configuration,
          // secrets included (kept sealed in the target's snapshot).
          const target =
            row.action === 'ROLLBACK' && row.toDeploymentId
              ? (await tx.findOne(DeploymentRow, { id: row.toDeploymentId }))?.snapshot
              : undefined;
          row.snapshot = {
            environment: control.Environment.toJSON(snap.environment),
            services: definitionsOfRun(snap, state, target),
          };
          row.startedAt = new Date(this.#now());
          finished = await this.#apply(tx, row, state);
        }
        await this.#runEvent(tx, row);
        await this.#queueMoved(tx, environmentId, row.id);
      });
      this.#deps.onCommit();
      this.#runLog.tell();
      if (!finished) return;
    }
  }

  /** Every environment with queued work: called at start, so a crash between two runs loses nothing. */
  async kickAll(): Promise<void> {
    const rows = await this.#deps.db.retry('reading queued runs', (em) =>
      em.find(DeploymentRow, { status: 'QUEUED' }, { fields: ['environmentId'] }),
    );
    for (const environmentId of new Set(rows.map((r) => r.environmentId))) {
      await this.kick(environmentId).catch((e: unknown) =>
        this.#deps.log.warn({ err: e, environmentId }, 'could not start a queued run'),
      );
    }
  }

  // --- reads ----------------------------------------------------------------------------------

  async getDeployment(deploymentId: string): Promise<control.Deployment> {
    return (await this.getRun(deploymentId)).deployment;
  }

  /** A whole run, and the sequence of its latest event that it includes (readers of deltas resync with it). */
  async getRun(deploymentId: string): Promise<{ deployment: control.Deployment; eventSequence: number }> {
    if (!UUID.test(deploymentId)) throw notFound('deployment', deploymentId, 'deployment_id');
    const found = await this.#deps.db.retry('reading a run', async (em) => {
      const row = await em.findOne(DeploymentRow, { id: deploymentId });
      return row
        ? { deployment: deploymentView(row, await this.#queueStanding(em, row)), eventSequence: row.eventSequence }
        : undefined;
    });
    if (!found) throw notFound('deployment', deploymentId, 'deployment_id');
    return found;
  }

  async listDeployments(req: {
    environmentId: string;
    pageSize: number;
    pageToken: string;
  }): Promise<{ deployments: control.Deployment[]; nextPageToken: string }> {
    if (!UUID.test(req.environmentId)) throw invalidArgument('environment_id', 'must be an environment id');
    if (req.pageSize > 500) throw invalidArgument('page_size', 'must be at most 500');
    const size = req.pageSize || 50;
    let before: string | undefined;
    if (req.pageToken !== '') {
      before = Buffer.from(req.pageToken, 'base64url').toString();
      if (!UUID.test(before)) throw invalidArgument('page_token', 'is not a token from a previous page');
    }
    const { rows, deployments } = await this.#deps.db.retry('listing runs', async (em) => {
      // Ids are time-ordered (UUIDv7): newest first by id.
      const found = await em.find(
        DeploymentRow,
        { environmentId: req.environmentId, ...(before ? { id: { $lt: before } } : {}) },
        { orderBy: { id: 'desc' }, limit: size + 1 },
      );
      const views = await Promise.all(
        found.slice(0, size).map(async (r) => deploymentView(r, await this.#queueStanding(em, r))),
      );
      return { rows: found, deployments: views };
    });
    const page = rows.slice(0, size);
    return {
      deployments,
      nextPageToken: rows.length > size ? Buffer.from(page.at(-1)!.id).toString('base64url') : '',
    };
  }

  /** The dry run: what would mirror, build, deploy, be skipped. Nothing is stored or sent. */
  async plan(request: bus.ActionRequested): Promise<control.Deployment> {
    const action = actionName(request.action);
    if (!action) throw invalidArgument('action', 'is required');
    if (!UUID.test(request.environmentId)) throw invalidArgument('environment_id', 'must be an environment id');
    parseVersion(request.version);
    const snap = await this.#snapshot(request.environmentId);
    for (const id of request.serviceIds) {
      if (!snap.services.some((s) => s.id === id)) throw notFound('service', id, 'service_ids');
    }
    checkVersions(request.versions, action, snap, parseVersion);
    const charted = customChartOnLocal(snap, action, request.serviceIds);
    if (charted !== undefined) throw refuseCustomChart(charted, snap.environment.runtime);
    const em = this.#deps.db.em();
    const fake = {
      id: newId(),
      environmentId: request.environmentId,
      action,
      status: 'PLANNED',
      requester: request.requester,
      serviceIds: request.serviceIds,
      version: request.version,
      forceBuild: request.forceBuild,
      toDeploymentId: request.toDeploymentId || null,
      options: optionsOf(request, action),
      message: '',
      createdAt: new Date(this.#now()),
      startedAt: null,
      finishedAt: null,
    };
    const state = await this.#planFor(em, fake, snap);
    const predicted: RunState = {
      ...state,
      status: 'PLANNED',
      services: state.services.map((s) => ({ ...s, steps: predictSteps(s) })),
    };
    await explainRollback(em, predicted, snap, fake.toDeploymentId);
    await this.#predictBuilds(fake, predicted, snap);
    return deploymentView({ ...fake, state: predicted });
  }

  // --- internals ------------------------------------------------------------------------------

  /**
   * Asks the build service what each build or mirror of a plan would do and writes it into the
   * planned steps: CACHE_HIT where the mirror already has the image, otherwise why it would work.
   */
  async #predictBuilds(run: { id: string; environmentId: string }, state: RunState, snap: Snapshot): Promise<void> {
    const planned = state.services.filter((s) => s.build !== null);
    if (planned.length === 0) return;
    const stepOf = (s: ServiceRun) =>
      s.steps.find((st) => st.kind === (s.build?.what === 'GIT' ? 'BUILD' : 'MIRROR_IMAGE'));
    const jobs = planned.map((s) =>
      buildJobOf({
        jobId: newId(),
        deploymentId: run.id,
        environmentId: run.environmentId,
        environment: snap.environment,
        service: snap.services.find((x) => x.id === s.serviceId)!,
        version: s.version,
        attempt: 1,
        what: s.build?.what === 'GIT' ? 'GIT' : 'MIRROR',
        forceBuild: state.forceBuild,
      }),
    );
    let predictions: build.BuildPrediction[];
    try {
      if (this.#deps.predictBuilds === undefined) throw new Error('no build service to ask');
      predictions = await this.#deps.predictBuilds(jobs);
    } catch (e) {
      this.#deps.log.warn({ err: e, environmentId: run.environmentId }, 'could not predict builds for a plan');
      const why = e instanceof Error ? e.message : String(e);
      for (const s of planned) {
        const step = stepOf(s);
        if (step !== undefined) step.message = `no cache prediction (${why})`;
      }
      return;
    }
    const byJob = new Map(predictions.map((p) => [p.jobId, p]));
    planned.forEach((s, i) => {
      const p = byJob.get(jobs[i]!.jobId);
      const step = stepOf(s);
      if (p === undefined || step === undefined) return;
      step.message = p.cacheHit ? `predicted cache hit: ${p.detail}` : p.detail;
      if (p.cacheHit) step.outcome = 'CACHE_HIT';
      const clone = s.steps.find((st) => st.kind === 'GIT_CLONE');
      if (clone !== undefined && p.resolvedVersion.startsWith('commit:')) {
        clone.message = `would clone commit ${p.resolvedVersion.slice('commit:'.length)}`;
      }
    });
  }

  async #snapshot(environmentId: string): Promise<Snapshot> {
    const snap = await this.#deps.snapshot(environmentId);
    if (!snap.environment) throw notFound('environment', environmentId, 'environment_id');
    return { ...snap, environment: snap.environment };
  }

  async #byRequestId(requestId: string): Promise<control.Deployment | undefined> {
    const key = await this.#deps.db.retry('reading a request key', (em) => em.findOne(RequestKeyRow, { requestId }));
    return key ? this.getDeployment(key.deploymentId) : undefined;
  }

  async #inLane<T>(environmentId: string, fn: (em: EntityManager, deleted: boolean) => Promise<T>): Promise<T> {
    // A lost connection runs the whole transaction again on what it reads then: facts are applied by
    // sequence, requests by request id, runs started by status, so a commit that did happen is not redone.
    // Every decision is one span (traces: the jobs and run events it writes carry it to their consumers).
    return inSpan('planner decide', { attributes: { 'stageline.environment.id': environmentId } }, () =>
      this.#deps.db.retry("changing an environment's runs", (outer) =>
        outer.transactional(async (em) => {
          const deleted = await lockLane(em, environmentId);
          return fn(em, deleted);
        }),
      ),
    );
  }

  async #planFor(
    em: EntityManager,
    row: Pick<DeploymentRow, 'id' | 'action' | 'serviceIds' | 'version' | 'forceBuild' | 'toDeploymentId' | 'options'>,
    snap: Snapshot,
  ): Promise<RunState> {
    const statuses = await em.find(ServiceStatusRow, { environmentId: snap.environment.id });
    const current = new Map<string, CurrentRow>(statuses.map((s) => [s.serviceId, s]));
    const facts = factsFrom(snap as snapshot.GetEnvironmentSnapshotResponse, current);
    // The environment's last few finished runs: how long each service's build and deploy took.
    const history = await em.execute<{ state: RunState | string }[]>(
      `select state from deployment where environment_id = ? and finished_at is not null and state is not null
        order by finished_at desc limit 5`,
      [snap.environment.id],
    );
    const expected = expectedDurations(history.map((h) => runStateOf(h.state)!));
    for (const f of facts.services) {
      const known = expected.get(f.id);
      if (known !== undefined) f.expectedMs = known;
      const source = snap.services.find((x) => x.id === f.id)?.source;
      if (f.kind === 'LIFECYCLE_JOB' && source?.$case === 'job') {
        f.runsOn = { deploy: source.value.onDeploy, stop: source.value.onStop, delete: source.value.onDelete };
      }
    }
    const request: RunRequest = {
      action: row.action as RunRequest['action'],
      serviceIds: row.serviceIds,
      version: row.version,
      forceBuild: row.forceBuild,
      ...(row.options?.versions ? { versions: row.options.versions } : {}),
      ...(row.options?.runLifecycleJobs ? { runLifecycleJobs: true } : {}),
    };
    if (row.action === 'ROLLBACK' && row.toDeploymentId) {
      const target = await em.findOne(DeploymentRow, { id: row.toDeploymentId });
      request.rollbackTo = Object.fromEntries(
        (target?.state?.services ?? [])
          // No image: a managed database (nothing to pull), or a past revision the deploy service keeps.
          .filter(
            (s) =>
              s.status === 'DEPLOYED' &&
              (s.image !== '' || (s.kind === 'DATABASE' && s.build === null) || s.version.startsWith('revision:')),
          )
          .map((s) => [s.serviceId, { version: s.version, image: s.image }]),
      );
    }
    return resumed(em, row.options, planRun(row.id, facts, request));
  }

  /**
   * Advances a run to `state`, writes it with the jobs it dispatches, and — when it finishes —
   * records each service's new state. Returns whether the run finished.
   */
  async #apply(em: EntityManager, row: RunRecord, input: RunState): Promise<boolean> {
    const { state, decisions } = advance(input, this.#now());
    const ids = { id: row.id, environmentId: row.environmentId, action: state.action };
    this.#runLog.note(
      { ...ids, serviceIds: state.services.map((s) => s.serviceId) },
      runTransitions(row.state ?? undefined, state),
    );
    row.state = state;
    row.status = state.status;
    if (row.startedAt === null && state.startedAt !== null) row.startedAt = new Date(state.startedAt);
    const dispatches = decisions.filter((d) => d.type === 'dispatch');
    const persisted = dispatches.some((d) => d.role === 'deploy')
      ? await serviceOutputs(em, row.environmentId)
      : new Map<string, Record<string, string>>();
    for (const d of dispatches) this.#dispatch(em, row, state, d, persisted);
    if (!isTerminalRun(state.status)) return false;
    row.finishedAt = new Date(state.finishedAt ?? this.#now());
    await this.#recordOutcome(em, row, state);
    return true;
  }

  #dispatch(
    em: EntityManager,
    row: RunRecord,
    state: RunState,
    d: Extract<Decision, { type: 'dispatch' }>,
    persisted: ReadonlyMap<string, Record<string, string>>,
  ): void {
    const snap = row.snapshot as { environment: unknown; services: unknown[] };
    const environment = control.Environment.fromJSON(snap.environment);
    const serviceJson = snap.services.find((s) => (s as { id?: string }).id === d.serviceId);
    const service = control.Service.fromJSON(serviceJson);
    const run = state.services.find((s) => s.serviceId === d.serviceId)!;
    const common = {
      jobId: d.jobId,
      deploymentId: row.id,
      environmentId: row.environmentId,
      project: environment.project,
      environmentName: environment.name,
      service,
      version: run.version,
      attempt: d.attempt,
    };
    if (d.role === 'build') {
      const job = buildJobOf({
        ...common,
        environment,
        what: d.what === 'GIT' ? 'GIT' : 'MIRROR',
        forceBuild: state.forceBuild,
      });
      enqueue(em, {
        id: newId(),
        subject: this.#deps.subjects.buildJobs(row.id),
        payload: bus.BuildJob.encode(job).finish(),
      });
    } else {
      const action =
        d.what === 'DEPLOY' ? 'DEPLOY' : d.what === 'STOP' ? 'STOP' : d.what === 'RESTART' ? 'RESTART' : 'DELETE';
      const job = bus.DeployJob.fromPartial({
        ...common,
        action: actionValue(action),
        image: run.image,
        runtime: environment.runtime,
        namespace: environment.settings?.namespace ?? '',
        kubernetesContext: environment.settings?.kubernetesContext ?? '',
        // How a kubernetes environment exposes public ports (deploy renders Services or an Ingress).
        ...(environment.settings?.exposure !== undefined ? { exposure: environment.settings.exposure } : {}),
        injectedEnv:
          run.deploy?.trigger !== undefined
            ? // A job run for STOP or DELETE walks the stages in reverse, before the earlier ones go: it
              // gets what the other services produced when they last deployed (a database's URL, say).
              Object.assign({}, ...[...persisted].filter(([id]) => id !== d.serviceId).map(([, o]) => o))
            : injectedEnv(state, d.serviceId, persisted),
        ...(run.deploy?.trigger !== undefined ? { trigger: actionValue(run.deploy.trigger) } : {}),
        deployHost: deployHostOf(environment),
      });
      enqueue(em, {
        id: newId(),
        // A `local` environment bound to a host: only that host's workers take its jobs.
        subject:
          job.deployHost === ''
            ? this.#deps.subjects.deployJobs(row.id)
            : this.#deps.subjects.hostDeployJobs(row.id, job.deployHost),
        payload: bus.DeployJob.encode(job).finish(),
      });
    }
  }

  async #recordOutcome(em: EntityManager, row: RunRecord, state: RunState): Promise<void> {
    const now = new Date(this.#now());
    for (const s of state.services) {
      const status = await em.findOne(ServiceStatusRow, { serviceId: s.serviceId });
      const current =
        status ??
        em.create(ServiceStatusRow, {
          serviceId: s.serviceId,
          environmentId: row.environmentId,
          hasResources: false,
          stopped: false,
          version: '',
          image: '',
          state: 'QUEUED',
          outputs: {},
          updatedAt: now,
        });
      const before = {
        hasResources: current.hasResources,
        stopped: current.stopped,
        version: current.version,
        image: current.image,
        state: current.state,
        outputs: current.outputs,
      };
      const next = standingAfterRun(before, s);
      if (next === before) continue;
      Object.assign(current, next, { updatedAt: now });
    }
    if (row.action === 'DELETE' && row.serviceIds.length === 0 && state.status === 'SUCCEEDED') {
      await em.execute('update lane set deleted = true where environment_id = ?', [row.environmentId]);
    }
  }

  /** When the run has ended: whether each of its services has resources now (control takes this rule). */
  async #resourcesAfter(em: EntityManager, row: RunRecord): Promise<Record<string, boolean>> {
    if (!row.state || !isTerminalRun(row.state.status)) return {};
    const resources = await serviceResources(em, row.environmentId);
    return Object.fromEntries(
      row.state.services.flatMap((s) => {
        const has = resources.get(s.serviceId);
        return has === undefined ? [] : [[s.serviceId, has]];
      }),
    );
  }

  /** The queue moved (a run started, or a queued one went): each run still queued says where it stands now. */
  async #queueMoved(em: EntityManager, environmentId: string, except: string): Promise<void> {
    const queued = await em.find(
      DeploymentRow,
      { environmentId, status: 'QUEUED', id: { $ne: except } },
      { orderBy: { createdAt: 'asc' } },
    );
    for (const r of queued) await this.#runEvent(em, r);
  }

  /** While QUEUED: its position and the run it waits for (domain/queue.ts). */
  async #queueStanding(em: EntityManager, row: RunRecord): Promise<Standing> {
    if (row.status !== 'QUEUED') return { position: 0, waitsFor: '' };
    const open = await em.execute<{ id: string; status: string; created_at: Date | string }[]>(
      `select id, status, created_at from deployment where environment_id = ? and status in (${OPEN.map(() => '?').join(', ')})`,
      [row.environmentId, ...OPEN],
    );
    return queueStanding(
      open.map((r) => ({ id: r.id, status: r.status, createdAt: new Date(r.created_at).getTime() })),
      row.id,
    );
  }

  async #stateOf(em: EntityManager, deploymentId: string): Promise<RunState | null> {
    const rows = await em.execute<{ state: RunState | string | null }[]>('select state from deployment where id = ?', [
      deploymentId,
    ]);
    return runStateOf(rows[0]?.state ?? null);
  }

  async #environmentStatus(
    em: EntityManager,
    environmentId: string,
    current?: RunRecord,
    /** The lane's deleted flag as the lock found it, when the caller has it. */
    deleted?: boolean,
  ): Promise<control.EnvironmentStatus> {
    const S = control.EnvironmentStatus;
    // Under the lane lock at most one run is active: when it is this one, it alone decides.
    if (deleted === false && current?.state != null && ACTIVE.includes(current.status)) {
      const status = activeEnvironmentStatus(current.action, current.state);
      if (status !== undefined) return S[`ENVIRONMENT_STATUS_${status}`];
    }
    const lane = await em.execute<{ deleted: boolean }[]>('select deleted from lane where environment_id = ?', [
      environmentId,
    ]);
    if (lane[0]?.deleted) return S.ENVIRONMENT_STATUS_DELETED;
    // Ids and statuses only: the open runs' whole state (and snapshot) is read for at most one of them.
    const open = await em.execute<{ id: string; status: string; action: string }[]>(
      `select id, status, action from deployment where environment_id = ? and status in (${OPEN.map(() => '?').join(', ')})
        order by created_at, id`,
      [environmentId, ...OPEN],
    );
    const active = open.find((r) => ACTIVE.includes(r.status));
    if (active !== undefined) {
      const needsState = !['STOP', 'RESTART', 'DELETE'].includes(active.action);
      const state = !needsState
        ? null
        : current?.id === active.id
          ? (current.state ?? null)
          : await this.#stateOf(em, active.id);
      const status = activeEnvironmentStatus(active.action, state);
      if (status !== undefined) return S[`ENVIRONMENT_STATUS_${status}`];
    }
    if (open.length > 0) return S.ENVIRONMENT_STATUS_QUEUED;
    const statuses = await em.find(ServiceStatusRow, { environmentId });
    if (statuses.some((s) => s.state === 'DELETE_ERROR')) return S.ENVIRONMENT_STATUS_DELETE_ERROR;
    if (statuses.some((s) => s.state === 'STOP_ERROR')) return S.ENVIRONMENT_STATUS_STOP_ERROR;
    if (statuses.some((s) => s.state.endsWith('_ERROR'))) return S.ENVIRONMENT_STATUS_DEPLOYMENT_ERROR;
    const live = statuses.filter((s) => s.hasResources);
    if (live.length === 0) return S.ENVIRONMENT_STATUS_NEVER_DEPLOYED;
    return live.every((s) => s.stopped) ? S.ENVIRONMENT_STATUS_STOPPED : S.ENVIRONMENT_STATUS_DEPLOYED;
  }

  /**
   * The run's next event, in the outbox. With `before` (the state a job report started from) an event
   * that does not end the run carries only the services that changed since (a delta, `partial`);
   * otherwise the whole run. `write` stores the run (after its sequence is taken, before the
   * environment's status is read).
   */
  async #runEvent(
    em: EntityManager,
    row: RunRecord,
    opts: { deleted?: boolean; before?: RunState; write?: () => Promise<void> } = {},
  ): Promise<void> {
    row.eventSequence += 1;
    await opts.write?.();
    // What the status and queue position read must be written first — unless the active run alone
    // decides them: then the jobs and this event go in together at the commit.
    const decidesAlone = opts.deleted === false && row.state != null && ACTIVE.includes(row.status);
    if (!decidesAlone) await em.flush();
    const whole = deploymentView(row, await this.#queueStanding(em, row));
    const changed =
      opts.before && row.state && !isTerminalRun(row.state.status)
        ? changedServices(opts.before, row.state)
        : undefined;
    const deployment =
      changed === undefined ? whole : { ...whole, services: whole.services.filter((s) => changed.has(s.serviceId)) };
    const eventId = newId();
    const payload = bus.DeploymentEvent.encode({
      eventId,
      occurredAt: new Date(this.#now()),
      deployment,
      sequence: row.eventSequence,
      partial: changed !== undefined,
      hasResources: await this.#resourcesAfter(em, row),
      environmentStatus: await this.#environmentStatus(em, row.environmentId, row, opts.deleted),
      planner: this.#deps.instance ?? '',
    }).finish();
    enqueue(em, { id: eventId, subject: this.#deps.subjects.runEvents(row.environmentId, row.id), payload });
  }
}

/** An open run as the queue's policy sees it. */
function openRunOf(r: DeploymentRow): OpenRun {
  return {
    id: r.id,
    action: r.action,
    status: r.status,
    requester: r.requester,
    version: r.version,
    serviceIds: r.serviceIds,
    forceBuild: r.forceBuild,
    createdAt: r.createdAt.getTime(),
    ...(r.options?.versions ? { versions: r.options.versions } : {}),
    resumeOf: r.options?.resumeOf ?? null,
  };
}

/** The services whose run differs between two states of one run (the core copies only what it changes). */
function changedServices(before: RunState, after: RunState): Set<string> {
  const changed = new Set<string>();
  after.services.forEach((s, i) => {
    if (before.services[i] !== s) changed.add(s.serviceId);
  });
  return changed;
}

/** A run state column read with raw SQL: the driver parses json, but not every column type. */
function runStateOf(value: RunState | string | null): RunState | null {
  return typeof value === 'string' ? (JSON.parse(value) as RunState) : value;
}

function toFact(event: bus.JobEvent, now: number): JobFact | undefined {
  const e = event.event;
  switch (e?.$case) {
    case 'stepStarted': {
      const kind = stepKindName(e.value.kind);
      if (!kind) return undefined;
      return {
        type: 'stepStarted',
        jobId: event.jobId,
        sequence: event.sequence,
        kind,
        at: e.value.startedAt?.getTime() ?? now,
        message: e.value.message,
      };
    }
    case 'stepFinished': {
      const step = e.value.step;
      const kind = step && stepKindName(step.kind);
      if (!step || !kind) return undefined;
      return {
        type: 'stepFinished',
        jobId: event.jobId,
        sequence: event.sequence,
        step: {
          kind,
          startedAt: step.startedAt?.getTime() ?? now,
          finishedAt: step.finishedAt?.getTime() ?? now,
          outcome: stepOutcomeName(step.outcome) ?? 'SUCCESS',
          message: step.message,
        },
      };
    }
    case 'jobFinished':
      return {
        type: 'jobFinished',
        jobId: event.jobId,
        sequence: event.sequence,
        succeeded: e.value.succeeded,
        state: serviceStateName(e.value.state) ?? 'QUEUED',
        message: e.value.message,
        image: e.value.image,
        endpoints: e.value.endpoints.map((x) => ({ port: x.port, url: x.url })),
        outputs: e.value.outputs,
        at: now,
        resolvedVersion: e.value.resolvedVersion,
      };
    case undefined:
      return undefined;
  }
}

/** A build or mirror job as the planner dispatches it (and as a plan asks the build service about it). */
function buildJobOf(j: {
  jobId: string;
  deploymentId: string;
  environmentId: string;
  environment: control.Environment;
  service: control.Service;
  version: string;
  attempt: number;
  what: 'GIT' | 'MIRROR';
  forceBuild: boolean;
}): bus.BuildJob {
  return bus.BuildJob.fromPartial({
    jobId: j.jobId,
    deploymentId: j.deploymentId,
    environmentId: j.environmentId,
    project: j.environment.project,
    environmentName: j.environment.name,
    service: j.service,
    version: j.version,
    attempt: j.attempt,
    kind: j.what === 'GIT' ? bus.BuildKind.BUILD_KIND_GIT : bus.BuildKind.BUILD_KIND_MIRROR,
    forceBuild: j.forceBuild,
    mirrorMode: j.environment.settings?.mirrorMode ?? control.MirrorMode.MIRROR_MODE_SERVICE,
  });
}

/** The steps a plan expects, without times: what would mirror, build, deploy. */
function predictSteps(s: ServiceRun): RunState['services'][number]['steps'] {
  return expectedSteps(s).map((kind) => ({ kind, startedAt: 0, finishedAt: null, outcome: null, message: '' }));
}

/** The deploy host a `local` environment is bound to (settings.deploy_host); '' for any host. */
function deployHostOf(environment: {
  runtime: string;
  settings?: { deployHost?: string | undefined } | undefined;
}): string {
  return environment.runtime === 'kubernetes' ? '' : (environment.settings?.deployHost ?? '');
}
