// Several JobEvents of one job in one message (JobEvent.earlier, see proto/stageline/bus/v1/jobs.proto):
// the message's own fields are the last event, `earlier` the ones before it, oldest first.
import { bus as busv1 } from '@stageline/proto';

/**
 * One message carrying `events` (of one job, in order; at least one): the last as the message itself,
 * the others in `earlier`. A reader that ignores `earlier` still gets the last event.
 */
export function coalesceJobEvents(events: readonly busv1.JobEvent[]): busv1.JobEvent {
  const last = events.at(-1);
  if (last === undefined) throw new Error('coalesceJobEvents: no event');
  return { ...last, earlier: events.slice(0, -1).map((e) => ({ ...e, earlier: [] })) };
}

/**
 * The events one JobEvent message carries, in the order they were reported: its `earlier` ones, then
 * itself (each without `earlier`). An old message (no `earlier`) is the one event it always was.
 */
export function jobEventsOf(message: busv1.JobEvent): busv1.JobEvent[] {
  if (message.earlier.length === 0) return [message];
  return [...message.earlier.map((e) => ({ ...e, earlier: [] })), { ...message, earlier: [] }];
}

/** Decodes a JobEvent message into the events it carries, in order (`jobEventsOf`). */
export function decodeJobEvents(data: Uint8Array): busv1.JobEvent[] {
  return jobEventsOf(busv1.JobEvent.decode(data));
}
