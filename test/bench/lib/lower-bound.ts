// The shortest a run could possibly take with the slot limits (root README.md, "Limits": at most 7 builds
// and 7 deploys of a run at once), with orchestration taking no time at all. A lower bound, not an optimum:
// a makespan close to it is near-perfect scheduling; far above it, time is lost somewhere.

export interface JobTimes {
  /** Build (or mirror) duration, ms. */
  build: number;
  /** Deploy duration, ms. */
  deploy: number;
}

export interface LowerBoundInput {
  /** Stages in execution order, each with its services' durations. */
  stages: JobTimes[][];
  maxBuilds: number;
  maxDeploys: number;
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/** A set of jobs on `slots` parallel slots takes at least its longest job and at least its total work / slots. */
export function block(durations: readonly number[], slots: number): number {
  if (durations.length === 0) return 0;
  return Math.max(Math.max(...durations), sum(durations) / slots);
}

/**
 * STRICT: every build before any deploy, then stage by stage. The builds' block, plus each stage's
 * deploy block, summed along the stage order.
 */
export function strictLowerBound(input: LowerBoundInput): number {
  const builds = input.stages.flat().map((j) => j.build);
  return (
    block(builds, input.maxBuilds) +
    sum(
      input.stages.map((s) =>
        block(
          s.map((j) => j.deploy),
          input.maxDeploys,
        ),
      ),
    )
  );
}

/**
 * PIPELINED: builds run ahead while earlier stages deploy; a stage's deploys start when the previous
 * stage is done. Two bounds, the larger wins:
 *  - the stage chain: the first stage cannot finish before its slowest build + deploy, nor before its
 *    first build plus its deploy block; each later stage adds its deploy block (the build work that
 *    cannot overlap is the first stage's build in front of the chain);
 *  - the build capacity: all builds take their block, and the last one built still deploys.
 */
export function pipelinedLowerBound(input: LowerBoundInput): number {
  const stages = input.stages.filter((s) => s.length > 0);
  if (stages.length === 0) return 0;
  const first = stages[0]!;
  const firstStage = Math.max(
    Math.max(...first.map((j) => j.build + j.deploy)),
    Math.min(...first.map((j) => j.build)) +
      block(
        first.map((j) => j.deploy),
        input.maxDeploys,
      ),
  );
  const chain =
    firstStage +
    sum(
      stages.slice(1).map((s) =>
        block(
          s.map((j) => j.deploy),
          input.maxDeploys,
        ),
      ),
    );
  const all = stages.flat();
  const capacity =
    block(
      all.map((j) => j.build),
      input.maxBuilds,
    ) + Math.min(...all.map((j) => j.deploy));
  return Math.max(chain, capacity);
}
