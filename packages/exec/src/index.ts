// @stageline/exec: how the build and deploy workers start git, buildah, podman, helm and kubectl.
export {
  minimalEnvironment,
  type RunOptions,
  type RunResult,
  runProcess,
  TOOL_ENVIRONMENT,
} from './process.ts';
