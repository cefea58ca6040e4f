// @stageline/cli: the `stageline` command. The program itself is `run(argv, io)`; the environment
// file's loader and planner are exported for tools that want to check or compare files themselves.
export { run, VERSION } from './cli.ts';
export type { Io, Output } from './context.ts';
export {
  EnvironmentFileError,
  type FileProblem,
  formatProblem,
  type LoadedFile,
  loadEnvironmentFile,
  schemaPath,
} from './env-file/load.ts';
export { type DesiredEnvironment, desiredEnvironment } from './env-file/model.ts';
export { type Change, type CurrentState, describeChange, type Plan, planApply } from './env-file/plan.ts';
export { EXIT } from './errors.ts';
