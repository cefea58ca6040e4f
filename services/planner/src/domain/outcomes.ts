// What a run means for its environment, decided from the run alone.
import type { ActionName, RunState } from './model.ts';

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
