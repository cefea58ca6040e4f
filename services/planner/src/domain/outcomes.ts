// What a run means for its environment, decided from the run alone.
import type { ActionName, RunState, ServiceRun } from './model.ts';

export type ActiveEnvironmentStatus = 'STOPPING' | 'RESTARTING' | 'DELETING' | 'BUILDING' | 'DEPLOYING';

/**
 * The environment's status while `action`'s run is the active one: what the action does, and for the
 * actions that deploy, whether an image is still being built or mirrored. Undefined for a deploying
 * action whose run has no state yet (it has not started).
 */
export function activeEnvironmentStatus(
  action: string,
  state: Pick<RunState, 'services'> | null,
): ActiveEnvironmentStatus | undefined {
  switch (action as ActionName) {
    case 'STOP':
      return 'STOPPING';
    case 'RESTART':
      return 'RESTARTING';
    case 'DELETE':
      return 'DELETING';
    default:
      if (state === null) return undefined;
      return state.services.some((s) => s.status === 'BUILDING' || s.status === 'MIRRORING') ? 'BUILDING' : 'DEPLOYING';
  }
}

/** What the planner keeps of a service between runs. */
export interface ServiceStanding {
  /** Resources exist (deployed or stopped): the one rule, which control takes from the run's last event. */
  hasResources: boolean;
  stopped: boolean;
  version: string;
  image: string;
  /** Its state after the last run that touched it (a ServiceState name). */
  state: string;
  /** What its last deploy produced for later stages. */
  outputs: Record<string, string>;
}

const GONE = { hasResources: false, stopped: false, version: '', image: '', outputs: {} } as const;

/**
 * A service's standing after a run ended: unchanged (the same object) when the run skipped or canceled
 * it. A lifecycle job that ran for the environment's STOP or DELETE leaves the service as that action
 * leaves services, whatever the job's own state; an error leaves whatever resources existed, and a
 * deploy that failed may have left some.
 */
export function standingAfterRun(before: ServiceStanding, s: ServiceRun): ServiceStanding {
  if (s.status === 'SKIPPED' || s.status === 'CANCELED') return before;
  const next = { ...before, state: s.status };
  if (s.kind === 'LIFECYCLE_JOB' && s.status === 'DEPLOYED' && s.deploy?.trigger !== undefined) {
    return s.deploy.trigger === 'STOP'
      ? { ...next, stopped: true, version: s.version, image: s.image, outputs: s.outputs }
      : { ...next, ...GONE };
  }
  switch (s.status) {
    case 'DEPLOYED':
      // Outputs stay until the service deploys again.
      return { ...next, hasResources: true, stopped: false, version: s.version, image: s.image, outputs: s.outputs };
    case 'RESTARTED':
      return { ...next, hasResources: true, stopped: false };
    case 'STOPPED':
      return { ...next, stopped: true };
    case 'DELETED':
      return { ...next, ...GONE };
    default:
      return s.deploy?.phase === 'FAILED' && s.deploy.what === 'DEPLOY' ? { ...next, hasResources: true } : next;
  }
}

export type EnvironmentStatusName =
  | ActiveEnvironmentStatus
  | 'DELETED'
  | 'QUEUED'
  | 'DELETE_ERROR'
  | 'STOP_ERROR'
  | 'DEPLOYMENT_ERROR'
  | 'NEVER_DEPLOYED'
  | 'STOPPED'
  | 'DEPLOYED';

/** What the environment's status is decided from. */
export interface EnvironmentFactsForStatus {
  /** The environment was deleted (its lane says so). */
  deleted: boolean;
  /** Its active run (running or canceling), if any: action and state (null before it started). */
  active?: { action: string; state: Pick<RunState, 'services'> | null } | undefined;
  /** Whether any run is open (queued, running or canceling). */
  anyOpen: boolean;
  /** What the planner keeps of each service. */
  services: readonly Pick<ServiceStanding, 'state' | 'hasResources' | 'stopped'>[];
}

/**
 * The environment's status: deleted; else what its active run is doing; else queued while runs wait;
 * else at rest, from its services — an error of the last run that touched a service (DELETE before
 * STOP before any other), never deployed when no service has resources, stopped when every one that
 * has them is stopped, deployed otherwise.
 */
export function environmentStatus(facts: EnvironmentFactsForStatus): EnvironmentStatusName {
  if (facts.deleted) return 'DELETED';
  if (facts.active !== undefined) {
    const status = activeEnvironmentStatus(facts.active.action, facts.active.state);
    if (status !== undefined) return status;
  }
  if (facts.anyOpen || facts.active !== undefined) return 'QUEUED';
  const services = facts.services;
  if (services.some((s) => s.state === 'DELETE_ERROR')) return 'DELETE_ERROR';
  if (services.some((s) => s.state === 'STOP_ERROR')) return 'STOP_ERROR';
  if (services.some((s) => s.state.endsWith('_ERROR'))) return 'DEPLOYMENT_ERROR';
  const live = services.filter((s) => s.hasResources);
  if (live.length === 0) return 'NEVER_DEPLOYED';
  return live.every((s) => s.stopped) ? 'STOPPED' : 'DEPLOYED';
}

/** The services whose run differs between two states of one run (the core copies only what it changes). */
export function changedServices(before: Pick<RunState, 'services'>, after: Pick<RunState, 'services'>): Set<string> {
  const changed = new Set<string>();
  after.services.forEach((s, i) => {
    if (before.services[i] !== s) changed.add(s.serviceId);
  });
  return changed;
}
