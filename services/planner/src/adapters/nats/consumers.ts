// The planner's two durable consumers: action requests from anyone, job events from the workers.
import {
  type Bus,
  type Consumption,
  decodeJobEvents,
  durableConsumers,
  HEADERS,
  KeyedBatches,
  outcome,
  REQUESTS_IDENTITY,
} from '@stageline/bus';
import { DomainError } from '@stageline/errors';
import { bus as busv1 } from '@stageline/proto';
import { PLANNER_FAILURE_SEQUENCE } from '../../app/deadlines.ts';
import type { PlannerApp } from '../../app/planner-app.ts';

/**
 * Who published a request on the bus. NATS 2.9 cannot stamp the publishing user on a message, so the
 * identity comes from the bus's permissions: on an authenticated bus only `requests` may publish
 * requests. The name the request carries is kept only as "on behalf of" (as control does for tokens).
 */
export function busRequester(authenticated: boolean, claimed: string): string {
  const actor = authenticated ? `bus:${REQUESTS_IDENTITY}` : 'bus:anonymous';
  const onBehalfOf = claimed
    .replace(/[^\x20-\x7e]/g, '')
    .trim()
    .slice(0, 128);
  return onBehalfOf === '' ? actor : `${actor} on behalf of ${onBehalfOf}`;
}

export async function consumeRequests(bus: Bus, app: PlannerApp): Promise<Consumption> {
  return bus.consume({
    stream: 'requests',
    durable: 'planner-requests',
    async handler(message) {
      let request: busv1.ActionRequested;
      try {
        request = busv1.ActionRequested.decode(message.data);
      } catch (e) {
        return outcome.reject(`undecodable ActionRequested: ${e instanceof Error ? e.message : String(e)}`);
      }
      // The Nats-Msg-Id is the request id (ActionRequested.request_id): a re-publish maps to the same run.
      const requestId = request.requestId || message.msgId || '';
      const environmentId = message.subject.split('.').at(-1) ?? '';
      if (request.environmentId !== '' && request.environmentId !== environmentId) {
        return outcome.reject(`environment_id ${request.environmentId} does not match the subject's ${environmentId}`);
      }
      try {
        await app.submit({
          ...request,
          requestId,
          environmentId,
          requester: busRequester(bus.user !== undefined, request.requester),
        });
      } catch (e) {
        // Refusals (bad fields, FAILED_PRECONDITION) are final: dead-letter them with the reason.
        if (e instanceof DomainError && !e.retryable) return outcome.reject(`${e.code}: ${e.message}`);
        throw e;
      }
      return outcome.ack();
    },
  });
}

/**
 * Job events this process holds at once, across runs (each run's are applied in order, in batches).
 * Many: a message is small and waits only for its run's batch to commit, and each pull asks for the
 * free slots, so more slots mean fewer pulls (and bigger batches) under load. The provisioned consumer's
 * max_ack_pending follows it (packages/bus provision.ts).
 */
export const RESULT_SLOTS = 256;

export async function consumeResults(bus: Bus, app: PlannerApp): Promise<Consumption> {
  const batches = new RunBatches((events) => app.onJobEvents(events));
  return bus.consume({
    stream: 'results',
    durable: 'planner-results',
    slots: RESULT_SLOTS,
    async handler(message) {
      let events: busv1.JobEvent[];
      try {
        // One message may carry several reports of a job (JobEvent.earlier): the same ordered list.
        events = decodeJobEvents(message.data);
      } catch (e) {
        return outcome.reject(`undecodable JobEvent: ${e instanceof Error ? e.message : String(e)}`);
      }
      // Queued before the first await: the consume loop hands messages over in stream order. Acked once
      // the batch that applied them is committed.
      await batches.addAll(events);
      return outcome.ack();
    },
  });
}

/**
 * A job a worker gave up on (dead-lettered after its last delivery, or refused) would leave its run
 * RUNNING forever: its service fails instead, with the dead letter's reason, and the run goes on by the
 * failure rules. The dead letter is the job's own payload, so the job, run and service are known.
 */
export async function consumeJobDeadLetters(bus: Bus, app: PlannerApp): Promise<Consumption> {
  const jobs = `${bus.prefix}.jobs.`;
  return bus.consume({
    stream: 'dlq',
    durable: 'planner-job-dead-letters',
    filterSubject: durableConsumers(bus.subjects)['planner-job-dead-letters'].filterSubject!,
    async handler(message) {
      const original = message.headers.has(HEADERS.dlqSubject) ? message.headers.get(HEADERS.dlqSubject) : '';
      const reason = message.headers.has(HEADERS.dlqReason) ? message.headers.get(HEADERS.dlqReason) : 'dead-lettered';
      let job: busv1.BuildJob | busv1.DeployJob;
      let role: 'build' | 'deploy';
      try {
        if (original.startsWith(`${jobs}build.`)) {
          job = busv1.BuildJob.decode(message.data);
          role = 'build';
        } else if (original.startsWith(`${jobs}deploy.`)) {
          job = busv1.DeployJob.decode(message.data);
          role = 'deploy';
        } else {
          return outcome.ack();
        }
      } catch {
        // An undecodable job names no run: there is nothing to fail.
        return outcome.ack();
      }
      if (job.jobId === '' || job.deploymentId === '') return outcome.ack();
      await app.onJobEvents([
        busv1.JobEvent.fromPartial({
          jobId: job.jobId,
          deploymentId: job.deploymentId,
          serviceId: job.service?.id ?? '',
          sequence: PLANNER_FAILURE_SEQUENCE,
          event: {
            $case: 'jobFinished',
            // No state: the planner takes the error state of what the job was (BUILD_ERROR, STOP_ERROR, …).
            value: busv1.JobFinished.fromPartial({
              succeeded: false,
              message: `the ${role} worker gave up on the job: ${reason}`,
            }),
          },
        }),
      ]);
      return outcome.ack();
    },
  });
}

/**
 * Job events are applied in batches, one at a time (a group commit): while one batch is applied, the
 * events of every run that arrive queue up, then go together in one transaction — a few statements
 * whatever the number of runs in it (app/results.ts). Events of one run keep their stream order; a
 * batch that fails is applied again one event at a time, so a bad event fails alone (KeyedBatches).
 */
export class RunBatches extends KeyedBatches<busv1.JobEvent> {
  constructor(apply: (events: busv1.JobEvent[]) => Promise<void>) {
    super(() => 'results', apply);
  }
}

/** Control's model changes: a removed service or a deleted environment takes its secret values with it. */
export async function consumeEnvironmentEvents(
  bus: Bus,
  purge: (environmentId: string, serviceId?: string) => Promise<unknown>,
): Promise<Consumption> {
  return bus.consume({
    stream: 'events',
    durable: 'planner-environments',
    filterSubject: bus.subjects.filters.environmentEvents,
    async handler(message) {
      let event: busv1.EnvironmentEvent;
      try {
        event = busv1.EnvironmentEvent.decode(message.data);
      } catch (e) {
        return outcome.reject(`undecodable EnvironmentEvent: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (event.event?.$case === 'serviceRemoved') await purge(event.environmentId, event.event.value.serviceId);
      if (event.event?.$case === 'environmentRemoved') await purge(event.environmentId);
      return outcome.ack();
    },
  });
}
