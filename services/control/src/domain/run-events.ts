// A run rebuilt from the planner's run events: most are deltas (only the services they changed), each
// with its sequence number; a reader that misses one fetches the whole run again.
import { control } from '@stageline/proto';

/** A whole run and the sequence of the latest event it includes (0: unknown). */
export interface FollowedRun {
  run: control.Deployment;
  sequence: number;
}

/** One run event as a reader needs it (bus.v1.DeploymentEvent). */
export interface RunEventView {
  deployment: control.Deployment;
  sequence: number;
  partial: boolean;
}

/** A delta applied to a whole run: the delta's own fields and stages, its services replacing the run's by id. */
export function applyRunDelta(run: control.Deployment, delta: control.Deployment): control.Deployment {
  const changed = new Map(delta.services.map((s) => [s.serviceId, s]));
  return { ...delta, services: run.services.map((s) => changed.get(s.serviceId) ?? s) };
}

/**
 * The run after `event`, or 'resync' when an event is missing between the two (fetch the whole run,
 * then go on). An event the run already includes changes nothing; a whole event replaces the run.
 */
export function followRun(current: FollowedRun, event: RunEventView): FollowedRun | 'resync' {
  if (event.sequence !== 0 && event.sequence <= current.sequence) return current;
  if (!event.partial) return { run: event.deployment, sequence: event.sequence };
  if (current.sequence !== 0 && event.sequence === current.sequence + 1) {
    return { run: applyRunDelta(current.run, event.deployment), sequence: event.sequence };
  }
  return 'resync';
}

const FINISHED: readonly control.DeploymentStatus[] = [
  control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED,
  control.DeploymentStatus.DEPLOYMENT_STATUS_FAILED,
  control.DeploymentStatus.DEPLOYMENT_STATUS_CANCELED,
];

/**
 * Of one environment's run events in stream order, those whose recording matters: every event that
 * ends a run (it records the run's services), and the last one (its status is the environment's now).
 * An event that only carries a status is overtaken by any later one.
 */
export function eventsToRecord<E extends { deployment?: control.Deployment | undefined }>(
  events: readonly E[],
): (E & { deployment: control.Deployment })[] {
  return events.filter(
    (e, i): e is E & { deployment: control.Deployment } =>
      e.deployment !== undefined && (i === events.length - 1 || FINISHED.includes(e.deployment.status)),
  );
}
