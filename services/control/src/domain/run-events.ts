// A run rebuilt from the planner's run events: most are deltas (only the services they changed), each
// with its sequence number; a reader that misses one fetches the whole run again.
import { control } from '@stageline/proto';
import { sameValue } from './equality.ts';

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

/** A run's statuses once it is over. */
export const FINISHED: readonly control.DeploymentStatus[] = [
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

/** What runs change of a service: whether it has resources, and where it answers. */
export interface ServiceRunState {
  id: string;
  hasResources: boolean;
  endpoints: control.Endpoint[];
}

/** What runs change of an environment: its status and its services' run state. */
export interface RecordedRuns {
  status: control.EnvironmentStatus;
  services: ServiceRunState[];
}

/** A run event as control records it. */
export interface RunEventFacts {
  deployment: control.Deployment;
  /** The environment's status after the event (UNSPECIFIED: the event says nothing about it). */
  status: control.EnvironmentStatus;
  /** The planner's rule, on the run's last event; an older event without it falls back to the service's state. */
  hasResources?: Readonly<Record<string, boolean>> | undefined;
  /** The event's place in its run's events (DeploymentEvent.sequence; 0 or absent: unknown). */
  sequence?: number | undefined;
}

/** The environment's status a recorded event left, and the run that did it (the change's actor). */
export interface RunStatusWrite {
  deploymentId: string;
  status: control.EnvironmentStatus;
}

/** What recording some run events changes: one write per event that changed something, and the result. */
export interface RunRecording {
  writes: RunStatusWrite[];
  /** The environment after them (`services` in the order given). */
  next: RecordedRuns;
  /** The services whose run state changed (ids, in the order given). */
  changedServiceIds: string[];
}

const S = control.ServiceState;

/** A service after a run that ended: its state there and the planner's "has resources" (when it says). */
function serviceAfter(service: ServiceRunState, run: control.ServiceRun, has: boolean | undefined): ServiceRunState {
  switch (run.status) {
    case S.SERVICE_STATE_DEPLOYED:
      return { ...service, hasResources: has ?? true, endpoints: run.endpoints };
    case S.SERVICE_STATE_RESTARTED:
    case S.SERVICE_STATE_STOPPED:
    case S.SERVICE_STATE_DEPLOYMENT_ERROR:
      return { ...service, hasResources: has ?? true };
    case S.SERVICE_STATE_DELETED:
      return { ...service, hasResources: has ?? false, endpoints: [] };
    default:
      return has === undefined ? service : { ...service, hasResources: has };
  }
}

const sameEndpoints = (a: readonly control.Endpoint[], b: readonly control.Endpoint[]) => sameValue(a, b);

/**
 * Run events recorded in order on what the environment has now: an event that does not end a run sets
 * the environment's status; one that ends it also sets each of its services' resources and endpoints.
 * An event that changes nothing — or says no status — writes nothing. Recording the same events again
 * writes nothing: pure, and idempotent.
 */
export function recordRunEvents(current: RecordedRuns, events: readonly RunEventFacts[]): RunRecording {
  const writes: RunStatusWrite[] = [];
  let status = current.status;
  let services = current.services;
  for (const event of events) {
    if (event.status === control.EnvironmentStatus.ENVIRONMENT_STATUS_UNSPECIFIED) continue;
    const { deployment } = event;
    let after = services;
    if (FINISHED.includes(deployment.status)) {
      const runs = new Map(deployment.services.map((r) => [r.serviceId, r]));
      const has = event.hasResources ?? {};
      after = services.map((s) => {
        const run = runs.get(s.id);
        return run === undefined ? s : serviceAfter(s, run, has[s.id]);
      });
    }
    const changed = after.some(
      (s, i) => s.hasResources !== services[i]!.hasResources || !sameEndpoints(s.endpoints, services[i]!.endpoints),
    );
    if (!changed && event.status === status) continue;
    services = after;
    status = event.status;
    writes.push({ deploymentId: deployment.id, status });
  }
  const changedServiceIds = services
    .filter(
      (s, i) =>
        s.hasResources !== current.services[i]!.hasResources ||
        !sameEndpoints(s.endpoints, current.services[i]!.endpoints),
    )
    .map((s) => s.id);
  return { writes, next: { status, services }, changedServiceIds };
}

/** What deciding whether a run event changes anything takes of it. */
export interface RunEventHead {
  deployment: { id: string; status: control.DeploymentStatus };
  status: control.EnvironmentStatus;
  sequence?: number | undefined;
}

/** The last run event this process recorded of an environment, and the status the environment then had. */
export interface LastRecorded {
  deploymentId: string;
  sequence: number;
  status: control.EnvironmentStatus;
}

/**
 * Whether `events` (one environment's, in stream order) can change nothing: each follows directly on the
 * one before — the first on the last one recorded — in the same run (sequence + 1: nothing of another
 * run came between), none ends the run, and none says another status. Such events need no statement.
 */
export function changeNothing(last: LastRecorded | undefined, events: readonly RunEventHead[]): boolean {
  if (last === undefined || last.sequence === 0) return false;
  let sequence = last.sequence;
  for (const e of events) {
    if (e.deployment.id !== last.deploymentId || e.sequence !== sequence + 1) return false;
    if (FINISHED.includes(e.deployment.status)) return false;
    if (e.status !== last.status && e.status !== control.EnvironmentStatus.ENVIRONMENT_STATUS_UNSPECIFIED) return false;
    sequence = e.sequence;
  }
  return true;
}
