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
