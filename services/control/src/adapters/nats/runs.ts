import { type Bus, type Consumption, KeyedBatches, outcome } from '@stageline/bus';
import { bus as busv1 } from '@stageline/proto';
import type { ControlApp } from '../../app/control-app.ts';
import { type RunEventHead, readRunEventHead } from './run-event-head.ts';

/** Run events this process holds at once, across environments (each one's are recorded in order). */
export const RUN_EVENT_SLOTS = 16;

/** A run event as it waits to be recorded: its head, read off the wire, and the encoded event. */
interface Pending {
  head: RunEventHead;
  data: Uint8Array;
}

/** Control follows the planner's run events: environment status, endpoints, resources left. */
export function followRuns(bus: Bus, app: ControlApp): Promise<Consumption> {
  // An environment's status must not go back to an older event's: its events are recorded in stream
  // order, those that arrive while others are recorded together — where only the last one's status
  // counts, unless an earlier one ends a run.
  const batches = new KeyedBatches<Pending>(
    (p) => p.head.deployment.environmentId,
    async (pending) => {
      const environmentId = pending[0]!.head.deployment.environmentId;
      // Most events change nothing here: decided on their heads alone, no statement, no whole decode.
      if (
        app.skipUnchanged(
          environmentId,
          pending.map((p) => p.head),
        )
      )
        return;
      const facts = pending.flatMap(({ data }) => {
        const e = busv1.DeploymentEvent.decode(data);
        return e.deployment === undefined
          ? []
          : [
              {
                deployment: e.deployment,
                status: e.environmentStatus,
                hasResources: e.hasResources,
                sequence: e.sequence,
              },
            ];
      });
      await app.recordRuns(environmentId, facts);
    },
  );
  return bus.consume({
    stream: 'events',
    durable: 'control-runs',
    filterSubject: bus.subjects.filters.runEvents,
    slots: RUN_EVENT_SLOTS,
    async handler(message) {
      const head = readRunEventHead(message.data);
      if (head === undefined) {
        // Not one we can read: say why (or, a well-formed event without a run, there is nothing to record).
        try {
          busv1.DeploymentEvent.decode(message.data);
        } catch (e) {
          return outcome.reject(`undecodable DeploymentEvent: ${e instanceof Error ? e.message : String(e)}`);
        }
        return outcome.ack();
      }
      // Queued before the first await: the consume loop hands messages over in stream order.
      await batches.add({ head, data: message.data });
      return outcome.ack();
    },
  });
}
