import { type Bus, type Consumption, outcome } from '@stageline/bus';
import { bus as busv1 } from '@stageline/proto';
import type { ControlApp } from '../../app/control-app.ts';

/** Control follows the planner's run events: environment status, endpoints, resources left. */
export function followRuns(bus: Bus, app: ControlApp): Promise<Consumption> {
  return bus.consume({
    stream: 'events',
    durable: 'control-runs',
    filterSubject: bus.subjects.filters.runEvents,
    // One at a time: an environment's status must not go back to an older event's.
    slots: 1,
    async handler(message) {
      let event: busv1.DeploymentEvent;
      try {
        event = busv1.DeploymentEvent.decode(message.data);
      } catch (e) {
        return outcome.reject(`undecodable DeploymentEvent: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (event.deployment) await app.recordRun(event.deployment, event.environmentStatus, event.hasResources);
      return outcome.ack();
    },
  });
}
