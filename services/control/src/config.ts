// One validated configuration object from the environment; a bad value stops the start with its name.
import type { KeySource } from '@stageline/secrets';
import { type CommonConfig, commonConfig, type Env, envReader, hostPort } from '@stageline/service';

export interface ControlConfig extends CommonConfig {
  /** Where the planner serves PlannerService: every action goes there. */
  plannerAddress: string;
  /** A build service (any of them): ExplainBuild is answered there. */
  buildAddress: string;
  /**
   * A file holding an admin token (`stl_…`) to make live at start, once — the first credential of a
   * new install (set-up writes `$STAGELINE_STATE/admin.token`). Empty: none.
   */
  adminTokenFile: string;
  /** The secret keys; absent: from the environment (STAGELINE_SECRET_KEY_FILE, _DIR, $STAGELINE_STATE/keys). */
  secretKeys?: KeySource;
}

export function loadConfig(env: Env = process.env): ControlConfig {
  const read = envReader(env, {
    STAGELINE_PLANNER_ADDRESS: '127.0.0.1:50052',
    STAGELINE_BUILD_ADDRESS: '127.0.0.1:50053',
    STAGELINE_ADMIN_TOKEN_FILE: '',
  });
  return {
    ...commonConfig(env, '127.0.0.1:50051', 'control'),
    plannerAddress: hostPort('STAGELINE_PLANNER_ADDRESS', read('STAGELINE_PLANNER_ADDRESS')),
    buildAddress: hostPort('STAGELINE_BUILD_ADDRESS', read('STAGELINE_BUILD_ADDRESS')),
    adminTokenFile: read('STAGELINE_ADMIN_TOKEN_FILE'),
  };
}
