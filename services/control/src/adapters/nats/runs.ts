import { type Bus, type Consumption, KeyedBatches, outcome } from '@stageline/bus';
import { bus as busv1 } from '@stageline/proto';
import type { ControlApp } from '../../app/control-app.ts';

/** Run events this process holds at once, across environments (each one's are recorded in order). */
export const RUN_EVENT_SLOTS = 16;

/** Control follows the planner's run events: environment status, endpoints, resources left. */
export function followRuns(bus: Bus, app: ControlApp): Promise<Consumption> {
  // An environment's status must not go back to an older event's: its events are recorded in stream
  // order, those that arrive while others are recorded together — where only the last one's status
  // counts, unless an earlier one ends a run.
  const batches = new KeyedBatches<busv1.DeploymentEvent>(
    (event) => event.deployment?.environmentId ?? '',
    async (events) => {
      const facts = events.flatMap((e) =>
        e.deployment === undefined
          ? []
          : [
              {
                deployment: e.deployment,
                status: e.environmentStatus,
                hasResources: e.hasResources,
                sequence: e.sequence,
              },
            ],
      );
      const environmentId = facts[0]?.deployment.environmentId;
      // Together: most change nothing and cost no statement; else one, or one transaction.
      if (environmentId !== undefined) await app.recordRuns(environmentId, facts);
    },
  );
  return bus.consume({
    stream: 'events',
    durable: 'control-runs',
    filterSubject: bus.subjects.filters.runEvents,
    slots: RUN_EVENT_SLOTS,
    async handler(message) {
      let event: busv1.DeploymentEvent;
      try {
        event = busv1.DeploymentEvent.decode(message.data);
      } catch (e) {
        return outcome.reject(`undecodable DeploymentEvent: ${e instanceof Error ? e.message : String(e)}`);
      }
      // Queued before the first await: the consume loop hands messages over in stream order.
      if (event.deployment) await batches.add(event);
      return outcome.ack();
    },
  });
}
