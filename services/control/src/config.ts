// One validated configuration object from the environment; a bad value stops the start with its name.
import { type CommonConfig, commonConfig, type Env, envReader, hostPort } from '@stageline/service';

export interface ControlConfig extends CommonConfig {
  /** Where the planner serves PlannerService: every action goes there. */
  plannerAddress: string;
}

export function loadConfig(env: Env = process.env): ControlConfig {
  const read = envReader(env, { STAGELINE_PLANNER_ADDRESS: '127.0.0.1:50052' });
  return {
    ...commonConfig(env, '127.0.0.1:50051'),
    plannerAddress: hostPort('STAGELINE_PLANNER_ADDRESS', read('STAGELINE_PLANNER_ADDRESS')),
  };
}
