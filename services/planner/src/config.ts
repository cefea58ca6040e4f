// The planner's whole configuration: read once from the environment, validated, then passed down.
import { type CommonConfig, commonConfig, type Env, envReader, hostPort } from '@stageline/service';

export { ConfigError } from '@stageline/service';

export interface PlannerConfig extends CommonConfig {
  /** Where control serves the environment snapshots (SnapshotService). */
  controlAddress: string;
  /** A build service (any of them): a plan asks it which builds and mirrors would be cache hits. */
  buildAddress: string;
}

/** Throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env): PlannerConfig {
  const read = envReader(env, {
    STAGELINE_CONTROL_ADDRESS: '127.0.0.1:50051',
    STAGELINE_BUILD_ADDRESS: '127.0.0.1:50053',
  });
  return {
    ...commonConfig(env, '127.0.0.1:50052', 'planner'),
    controlAddress: hostPort('STAGELINE_CONTROL_ADDRESS', read('STAGELINE_CONTROL_ADDRESS')),
    buildAddress: hostPort('STAGELINE_BUILD_ADDRESS', read('STAGELINE_BUILD_ADDRESS')),
  };
}
