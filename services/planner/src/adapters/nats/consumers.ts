// The planner's two durable consumers: action requests from anyone, job events from the workers.
import { type Bus, type Consumption, outcome } from '@stageline/bus';
import { DomainError } from '@stageline/errors';
import { bus as busv1 } from '@stageline/proto';
import type { PlannerApp } from '../../app/planner-app.ts';

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
      // The Nats-Msg-Id is the request id (DESIGN.md §6): a re-publish maps to the same run.
      const requestId = request.requestId || message.msgId || '';
      const environmentId = message.subject.split('.').at(-1) ?? '';
      if (request.environmentId !== '' && request.environmentId !== environmentId) {
        return outcome.reject(`environment_id ${request.environmentId} does not match the subject's ${environmentId}`);
      }
      try {
        await app.submit({ ...request, requestId, environmentId });
      } catch (e) {
        // Refusals (bad fields, FAILED_PRECONDITION) are final: dead-letter them with the reason.
        if (e instanceof DomainError && !e.retryable) return outcome.reject(`${e.code}: ${e.message}`);
        throw e;
      }
      return outcome.ack();
    },
  });
}

export async function consumeResults(bus: Bus, app: PlannerApp): Promise<Consumption> {
  return bus.consume({
    stream: 'results',
    durable: 'planner-results',
    // Events of one run must apply in stream order (a step's start before the job's end), so one at
    // a time. Partitioning by run would allow more; one planner applies hundreds of events a second.
    slots: 1,
    async handler(message) {
      let event: busv1.JobEvent;
      try {
        event = busv1.JobEvent.decode(message.data);
      } catch (e) {
        return outcome.reject(`undecodable JobEvent: ${e instanceof Error ? e.message : String(e)}`);
      }
      await app.onJobEvent(event);
      return outcome.ack();
    },
  });
}
