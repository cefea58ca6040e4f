// The planner's whole configuration: read once from the environment, validated, then passed down.
import { type CommonConfig, commonConfig, type Env, envReader, hostPort, integer } from '@stageline/service';

export { ConfigError } from '@stageline/service';

export interface PlannerConfig extends CommonConfig {
  /** Where control serves the environment snapshots (SnapshotService). */
  controlAddress: string;
  /** A build service (any of them): a plan asks it which builds and mirrors would be cache hits. */
  buildAddress: string;
  /** How long a dispatched job may wait for a worker before its service fails (no run hangs). */
  jobQueueLimitMs: number;
  /** Added to a taken job's own time budget before its service fails for want of a result. */
  jobDeadlineGraceMs: number;
}

/** Throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env): PlannerConfig {
  const read = envReader(env, {
    STAGELINE_CONTROL_ADDRESS: '127.0.0.1:50051',
    STAGELINE_BUILD_ADDRESS: '127.0.0.1:50053',
    JOB_QUEUE_LIMIT_MS: '1800000',
    JOB_DEADLINE_GRACE_MS: '300000',
  });
  return {
    ...commonConfig(env, '127.0.0.1:50052', 'planner'),
    controlAddress: hostPort('STAGELINE_CONTROL_ADDRESS', read('STAGELINE_CONTROL_ADDRESS')),
    buildAddress: hostPort('STAGELINE_BUILD_ADDRESS', read('STAGELINE_BUILD_ADDRESS')),
    jobQueueLimitMs: integer('JOB_QUEUE_LIMIT_MS', read('JOB_QUEUE_LIMIT_MS'), 1000, 7 * 24 * 3_600_000),
    jobDeadlineGraceMs: integer('JOB_DEADLINE_GRACE_MS', read('JOB_DEADLINE_GRACE_MS'), 0, 24 * 3_600_000),
  };
}
