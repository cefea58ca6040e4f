// The worker framework used by the build and deploy services: one durable consumer per role, N slots
// per process, heartbeats for long jobs, cancel signals, job events and log lines back to the planner,
// and idempotency by job id (a redelivered job that already finished reports its result again).

import { Kvm } from '@nats-io/kv';
import { DomainError } from '@stageline/errors';
import type { Logger } from '@stageline/log';
import { bus as busv1, control } from '@stageline/proto';
import { failSpan, inSpan, metrics, type Span, secondsSince, spanError, startSpan } from '@stageline/telemetry';
import type { Bus } from './bus.ts';
import { CoalescingQueue } from './coalescing-queue.ts';
import type { BusMessage } from './consume-loop.ts';
import { toDomainError } from './jetstream-errors.ts';
import { coalesceJobEvents } from './job-events.ts';
import { outcome } from './outcomes.ts';
import { validateToken } from './subjects.ts';

export interface JobIdentity {
  jobId: string;
  deploymentId: string;
  serviceId: string;
  attempt: number;
}

export interface JobContext extends JobIdentity {
  /** Aborted when the run is canceled (CancelRequested) or the worker stops. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** One line of the service's run log, streamed on `<prefix>.logs.<deploymentId>.<serviceId>`. */
  output(message: string, step?: control.StepKind): void;
  stepStarted(kind: control.StepKind, message?: string): Promise<void>;
  stepFinished(step: control.Step): Promise<void>;
  /** Heartbeat for long jobs; the framework also sends one every third of ack_wait. */
  working(): void;
  /**
   * Throws LeaseLost when a newer delivery of this job holds its lease (this copy was paused past its
   * ack wait): call it right before an effect that must happen once, such as recording the outcome.
   */
  fence(): Promise<void>;
}

export type WorkerRole = 'build' | 'deploy';

export interface WorkerOptions<J> {
  bus: Bus;
  role: WorkerRole;
  log: Logger;
  /** Jobs this process runs at once. Default 7. */
  slots?: number;
  /** Default `<role>-workers`. */
  durable?: string;
  /** The consumer's filter (e.g. one deploy host's jobs); default: as provisioned for `<role>-workers`. */
  filterSubject?: string;
  /** Default `DEFAULT_WORKER_ACK_WAIT_MS`; the heartbeat keeps long jobs alive. */
  ackWaitMs?: number;
  /** Default 5. */
  maxDeliver?: number;
  /** How long `stop()` lets jobs in flight finish before handing them back. Default 0: at once. */
  drainGraceMs?: number;
  /** Decodes a job; throwing dead-letters it with the reason. */
  decode(data: Uint8Array): J;
  identify(job: J): JobIdentity;
  handle(job: J, ctx: JobContext): Promise<busv1.JobFinished>;
}

export interface Worker {
  /**
   * Drains: stops taking jobs at once, lets the jobs it holds finish for `graceMs` (default the
   * options' `drainGraceMs`), then aborts what is left with WorkerStopping — handlers hand those back
   * (nothing recorded) for another worker. Resolves once every job is finished or handed back.
   */
  stop(graceMs?: number): Promise<void>;
  /** Jobs running in this process now. */
  inFlight(): number;
}

/** The abort reason of a job interrupted by its own worker's shutdown (not by the run). */
export class WorkerStopping extends Error {
  constructor() {
    super('worker stopping');
    this.name = 'WorkerStopping';
  }
}

/**
 * The abort reason of a stale copy of a job: a newer delivery of it took the job's lease (this worker
 * was paused past its ack wait and the job went to another). Like a stop, it touches nothing more and
 * records nothing: the live copy does the job.
 */
export class LeaseLost extends WorkerStopping {
  constructor() {
    super();
    this.name = 'LeaseLost';
    this.message = 'a newer delivery of the job holds its lease: this copy stops';
  }
}

/** True when a job's signal was aborted because its worker is stopping: hand the job back, don't fail it. */
export const isWorkerStopping = (reason: unknown): boolean => reason instanceof WorkerStopping;

/** Where cancel requests go: core NATS, every worker process hears them. */
export function cancelSubject(prefix: string, deploymentId: string): string {
  return `${prefix}.control.cancel.${validateToken(deploymentId, 'deployment_id')}`;
}

/** Publishes a cancel request for a run (planner). Core NATS: workers not running the run ignore it. */
export function publishCancel(bus: Bus, deploymentId: string): void {
  bus.nc.publish(cancelSubject(bus.prefix, deploymentId), busv1.CancelRequested.encode({ deploymentId }).finish());
}

const stepName = (kind: control.StepKind) => control.stepKindToJSON(kind).replace(/^STEP_KIND_/, '');

const FAILED_STATE: Record<WorkerRole, control.ServiceState> = {
  build: 3 satisfies control.ServiceState, // BUILD_ERROR
  deploy: 7 satisfies control.ServiceState, // DEPLOYMENT_ERROR
};

/**
 * How long a job may go without a heartbeat before JetStream hands it to another worker: 6 s. The
 * worker sends one every third of it (2 s), so a job whose worker lives is never taken over (two
 * heartbeats may be lost), and one whose worker died moves on within 6 s, picked up at once by a
 * waiting pull of another worker.
 */
export const DEFAULT_WORKER_ACK_WAIT_MS = 6_000;

/** Event sequences grow across redeliveries, so the planner can drop a stale delivery's events. */
const SEQUENCE_STRIDE = 1_000_000;

export async function startWorker<J>(options: WorkerOptions<J>): Promise<Worker> {
  const { bus, role } = options;
  const log = options.log.child({ component: 'worker', role });
  const ackWaitMs = options.ackWaitMs ?? DEFAULT_WORKER_ACK_WAIT_MS;
  const kv = await new Kvm(bus.js).create(`${bus.subjects.streamPrefix}_${role}_job_results`, {
    // A day is far longer than any redelivery window; the bucket never grows without bound.
    ttl: 24 * 3600 * 1000,
    history: 1,
    replicas: bus.replicas,
  });
  // A lease is `<message>.<delivery count>`, the message being the job message's Nats-Msg-Id (its
  // stream sequence when it has none): deliveries of one job message supersede each other by count; a job
  // published again (another message) takes the lease outright. Not the sequence alone: a stream rebuilt
  // after the NATS store was lost numbers from 1 again, and a re-dispatched job could get the old one's.
  type Lease = { message: string; delivery: number };
  const leaseText = (l: Lease) => new TextEncoder().encode(`${l.message}.${l.delivery}`);
  const leaseOf = (entry: { operation: string; value: Uint8Array } | null): Lease | undefined => {
    if (entry?.operation !== 'PUT') return undefined;
    const text = new TextDecoder().decode(entry.value);
    const dot = text.lastIndexOf('.');
    const delivery = Number(text.slice(dot + 1));
    return dot < 1 || !Number.isInteger(delivery) ? undefined : { message: text.slice(0, dot), delivery };
  };
  /**
   * Takes the job's lease for this delivery: false when a newer delivery of the same message holds it;
   * 'fresh' when no copy of the job ever took one (so it never finished: there is no result to look for).
   */
  async function takeLease(key: string, mine: Lease): Promise<boolean | 'fresh'> {
    // A first delivery usually finds no lease: one write instead of a read and a write.
    if (mine.delivery === 1) {
      try {
        await kv.create(key, leaseText(mine));
        return 'fresh';
      } catch {
        // Taken before (the job published again, or a lost reply): look below.
      }
    }
    for (let tries = 0; tries < 5; tries++) {
      const entry = await kv.get(key);
      const current = leaseOf(entry);
      if (current?.message === mine.message && current.delivery > mine.delivery) return false;
      if (current?.message === mine.message && current.delivery === mine.delivery) return true;
      try {
        if (entry === null) await kv.create(key, leaseText(mine));
        else await kv.update(key, leaseText(mine), entry.revision);
        return true;
      } catch {
        // Another delivery wrote it between our read and our write: look again.
      }
    }
    throw new DomainError('UNAVAILABLE', `could not take the lease of job ${key}`);
  }
  /** Whether this delivery still holds the job's lease (no other delivery took it since). */
  async function holdsLease(key: string, mine: Lease): Promise<boolean> {
    const current = leaseOf(await kv.get(key));
    return current === undefined || (current.message === mine.message && current.delivery === mine.delivery);
  }
  const running = new Map<string, Set<AbortController>>();
  const stopping = new AbortController();

  const cancels = bus.nc.subscribe(`${bus.prefix}.control.cancel.*`, {
    callback: (err, msg) => {
      if (err) return;
      try {
        const { deploymentId } = busv1.CancelRequested.decode(msg.data);
        for (const controller of running.get(deploymentId) ?? []) controller.abort(new Error('run canceled'));
      } catch (e) {
        log.warn({ err: e }, 'undecodable cancel request ignored');
      }
    },
  });

  const resultsSubject = (deploymentId: string) =>
    role === 'build' ? bus.subjects.buildResults(deploymentId) : bus.subjects.deployResults(deploymentId);

  async function handleMessage(message: BusMessage) {
    let job: J;
    let id: JobIdentity;
    try {
      job = options.decode(message.data);
      id = options.identify(job);
      validateToken(id.deploymentId, 'deployment_id');
      validateToken(id.serviceId, 'service_id');
      if (id.jobId === '') throw new Error('job_id is empty');
    } catch (e) {
      return outcome.reject(`undecodable ${role} job: ${e instanceof Error ? e.message : String(e)}`);
    }
    // One span per job (inside the delivery's consumer span), one child span per step it reports.
    const attributes = {
      'stageline.job.id': id.jobId,
      'stageline.deployment.id': id.deploymentId,
      'stageline.service.id': id.serviceId,
      'stageline.job.attempt': id.attempt,
    };
    return await inSpan(`${role} job`, { attributes }, (span) => runJob(message, job, id, span));
  }

  async function runJob(message: BusMessage, job: J, id: JobIdentity, jobSpan: Span) {
    const jobLog = log.child({ jobId: id.jobId, deploymentId: id.deploymentId, serviceId: id.serviceId });
    const kvKey = Buffer.from(id.jobId).toString('base64url');
    // One live copy: each delivery takes the job's lease; a copy whose lease a newer delivery took stops
    // (found out by its heartbeat, every third of ack_wait) and never records a result (the fence right
    // before it). Its step reports are not fenced: the planner drops a stale delivery's events by
    // sequence, as a newer delivery numbers its events from a higher stride.
    const lease = `lease.${kvKey}`;
    const mine = { message: message.msgId ?? `seq${message.streamSequence}`, delivery: message.deliveryCount };
    const took = await takeLease(lease, mine);
    if (took === false) {
      jobLog.info({ lease: mine }, 'a newer delivery of this job holds its lease: leaving this one alone');
      return outcome.leave('a newer delivery of the job holds its lease');
    }
    let lost = false;
    const fence = async () => {
      let holds = false;
      try {
        holds = !lost && (await holdsLease(lease, mine));
      } catch (e) {
        // The bus did not answer (a server cut off, a cluster electing): retried, never a job failure.
        throw toDomainError(e, `checking the lease of job ${id.jobId}`);
      }
      if (!holds) {
        lost = true;
        throw new LeaseLost();
      }
    };
    let sequence = message.deliveryCount * SEQUENCE_STRIDE;
    const subject = resultsSubject(id.deploymentId);
    // The job's events go out in order, one publish at a time; those reported while one is in flight go
    // together as ONE message (JobEvent.earlier; its own fields are the last event).
    const reports = new CoalescingQueue<busv1.JobEvent>(async (events) => {
      const last = coalesceJobEvents(events);
      // Unique per delivery of the job message: a re-reported result must not be taken for a duplicate
      // (nor a re-dispatched job's for the events of the copy it replaced).
      await bus.publish(subject, busv1.JobEvent.encode(last).finish(), {
        msgId: `${id.jobId}.${mine.message}.${last.sequence}`,
      });
    });
    const queue = (event: busv1.JobEvent['event']): Promise<void> => {
      sequence++;
      return reports.push({ ...id, sequence, event, earlier: [] });
    };

    const done = took === 'fresh' ? null : await kv.get(kvKey);
    if (done?.value && done.value.length > 0) {
      // Finished before (a late ack got lost): report the same result again, do nothing else.
      const finished = busv1.JobFinished.decode(done.value);
      jobLog.info('job already finished: reporting its result again');
      try {
        await fence();
      } catch (e) {
        if (e instanceof LeaseLost) return outcome.leave('a newer delivery of the job holds its lease');
        throw e;
      }
      await queue({ $case: 'jobFinished', value: finished });
      return outcome.ack();
    }

    const controller = new AbortController();
    const onStop = () => controller.abort(new WorkerStopping());
    stopping.signal.addEventListener('abort', onStop);
    const set = running.get(id.deploymentId) ?? new Set<AbortController>();
    running.set(id.deploymentId, set);
    set.add(controller);
    const heartbeat = setInterval(
      () => {
        if (lost) return;
        message.working();
        // A worker that was paused finds out here that its job moved on, and stops it.
        void holdsLease(lease, mine).then(
          (holds) => {
            if (holds || lost) return;
            lost = true;
            jobLog.warn({ lease: mine }, 'the job moved on to a newer delivery while this worker was paused: stopping');
            controller.abort(new LeaseLost());
          },
          () => undefined, // the bus is away: the next beat asks again
        );
      },
      Math.max(1_000, Math.floor(ackWaitMs / 3)),
    );
    // Log lines keep their order: each publish waits for the previous one.
    let logChain: Promise<unknown> = Promise.resolve();
    let linesPending = 0;
    // Step reports do not hold the job up: the job goes on while they travel (coalesced, see `reports`),
    // and its result goes after them. `reported` settles once the last report queued so far was sent.
    let reported: Promise<void> = Promise.resolve();
    const report = (event: busv1.JobEvent['event']): Promise<void> => {
      reported = queue(event).catch((e: unknown) => jobLog.warn({ err: e }, 'step report lost'));
      return Promise.resolve();
    };
    const logSubject = bus.subjects.logs(id.deploymentId, id.serviceId);
    const stepSpans = new Map<control.StepKind, Span>();

    const ctx: JobContext = {
      ...id,
      signal: controller.signal,
      log: jobLog,
      output(text, step) {
        const record = busv1.LogRecord.encode({
          deploymentId: id.deploymentId,
          line: { serviceId: id.serviceId, step: step ?? 0, timestamp: new Date(), message: text },
        }).finish();
        // After the step reports queued before it: a line never appears before its step has started.
        linesPending++;
        logChain = Promise.all([logChain, reported])
          .then(() => bus.publish(logSubject, record))
          .catch((e: unknown) => jobLog.warn({ err: e }, 'log line lost'))
          .finally(() => {
            linesPending--;
          });
      },
      stepStarted: (kind, text = '') => {
        stepSpans.get(kind)?.end();
        stepSpans.set(
          kind,
          startSpan(`${role} step ${stepName(kind)}`, { attributes: { 'stageline.step': stepName(kind) } }),
        );
        return report({ $case: 'stepStarted', value: { kind, startedAt: new Date(), message: text } });
      },
      stepFinished: (step) => {
        const stepSpan = stepSpans.get(step.kind);
        if (stepSpan !== undefined) {
          stepSpans.delete(step.kind);
          const result = control.stepOutcomeToJSON(step.outcome).replace(/^STEP_OUTCOME_/, '');
          stepSpan.setAttribute('stageline.step.outcome', result);
          if (result === 'FAILED') spanError(stepSpan, step.message || 'step failed');
          stepSpan.end();
        }
        if (step.startedAt !== undefined && step.finishedAt !== undefined) {
          metrics.stepDuration.observe(
            {
              step: control.stepKindToJSON(step.kind).replace(/^STEP_KIND_/, ''),
              outcome: control.stepOutcomeToJSON(step.outcome).replace(/^STEP_OUTCOME_/, ''),
            },
            Math.max(0, (step.finishedAt.getTime() - step.startedAt.getTime()) / 1000),
          );
        }
        return report({ $case: 'stepFinished', value: { step } });
      },
      working: () => message.working(),
      fence,
    };

    let finished: busv1.JobFinished;
    const started = performance.now();
    try {
      finished = await options.handle(job, ctx);
    } catch (e) {
      if (lost || e instanceof LeaseLost) {
        await Promise.all([reports.idle(), logChain]);
        return outcome.leave('a newer delivery of the job holds its lease');
      }
      if (stopping.signal.aborted || (e instanceof DomainError && e.retryable)) {
        // Someone else (or later) should do it: let JetStream redeliver (once its reports are out).
        await Promise.all([reports.idle(), logChain]);
        throw e;
      }
      jobLog.warn({ err: e }, 'job failed');
      failSpan(jobSpan, e);
      finished = busv1.JobFinished.fromPartial({
        succeeded: false,
        state: FAILED_STATE[role],
        message: e instanceof Error ? e.message : String(e),
      });
    } finally {
      for (const open of stepSpans.values()) open.end();
      clearInterval(heartbeat);
      stopping.signal.removeEventListener('abort', onStop);
      set.delete(controller);
      if (set.size === 0) running.delete(id.deploymentId);
    }
    const settled = async () => {
      await reports.idle();
      await logChain;
    };
    if (lost) {
      await settled();
      return outcome.leave('a newer delivery of the job holds its lease');
    }
    if (stopping.signal.aborted && !finished.succeeded) {
      // Interrupted by our own shutdown, not by the run: hand the job to another process.
      await settled();
      throw new DomainError('UNAVAILABLE', 'worker stopping');
    }
    metrics.jobs.inc({ kind: role, outcome: finished.succeeded ? 'succeeded' : 'failed' });
    jobSpan.setAttribute('stageline.job.outcome', finished.succeeded ? 'succeeded' : 'failed');
    if (!finished.succeeded) spanError(jobSpan, finished.message || 'job failed');
    metrics.jobDuration.observe({ kind: role }, secondsSince(started));
    // Every log line is out before the result, as the job's last word. With none outstanding (the usual
    // case at the end of a job), the step reports not yet sent wait for the result and go with it.
    if (linesPending > 0) await logChain;
    reports.hold();
    try {
      // The one lease check of the job's end: a copy whose lease a newer delivery took records nothing.
      await fence();
    } catch (e) {
      reports.release();
      await settled();
      if (e instanceof LeaseLost) return outcome.leave('a newer delivery of the job holds its lease');
      throw e;
    }
    // The result's publish and its KV record at once, both after the fence. Safe in either order: the
    // job message is acknowledged only once both succeeded. Were only the record kept (a crash, a failed
    // publish: the handler throws, the job is redelivered), the redelivery finds it and reports the result
    // again; were only the publish kept, the redelivery finds no record and does the job again, as it
    // would have with publish-then-put.
    const sent = queue({ $case: 'jobFinished', value: finished });
    reports.release();
    const [publishing, recording] = await Promise.allSettled([
      sent,
      kv.put(kvKey, busv1.JobFinished.encode(finished).finish()),
    ]);
    await logChain;
    if (publishing.status === 'rejected') throw publishing.reason;
    if (recording.status === 'rejected') throw recording.reason;
    return outcome.ack();
  }

  const consumption = await bus.consume({
    stream: role === 'build' ? 'buildJobs' : 'deployJobs',
    durable: options.durable ?? `${role}-workers`,
    ...(options.filterSubject !== undefined
      ? { filterSubject: options.filterSubject }
      : role === 'deploy'
        ? { filterSubject: bus.subjects.filters.deployJobs }
        : {}),
    slots: options.slots ?? 7,
    ackWaitMs,
    maxDeliver: options.maxDeliver ?? 5,
    handler: handleMessage,
  });
  log.info({ slots: options.slots ?? 7 }, 'worker consuming');

  return {
    inFlight: () => consumption.inFlight(),
    async stop(graceMs = options.drainGraceMs ?? 0) {
      // Stops pulling now; resolves when the handlers in flight have settled their messages.
      const drained = consumption.stop();
      const held = consumption.inFlight();
      if (held > 0) log.info({ jobs: held, graceMs }, 'worker draining: jobs in flight may finish');
      const handBack = setTimeout(() => {
        if (consumption.inFlight() > 0)
          log.info({ jobs: consumption.inFlight() }, 'drain grace over: handing jobs back');
        stopping.abort();
      }, graceMs);
      try {
        await drained;
      } finally {
        clearTimeout(handBack);
        stopping.abort();
        cancels.unsubscribe();
      }
    },
  };
}
