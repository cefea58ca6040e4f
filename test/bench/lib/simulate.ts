// The planner's scheduling policy (services/planner/src/domain/schedule.ts, `advance`) replayed with
// zero orchestration cost: what the same run would take if every dispatch and every report were
// instant. measured ÷ simulated isolates orchestration; simulated ÷ lower bound isolates the policy
// (which job it starts first) and the looseness of the bound.
import type { JobTimes, LowerBoundInput } from './lower-bound.ts';

type Phase = 'PENDING' | 'RUNNING' | 'DONE';

interface Sim extends JobTimes {
  stage: number;
  buildPhase: Phase;
  buildEnd: number;
  deployPhase: Phase;
  deployEnd: number;
}

export type Policy = 'PIPELINED' | 'STRICT';

/**
 * The makespan of a dispatch policy: builds of any stage in stage order within the build limit; a
 * stage's deploys once every earlier stage is done (PIPELINED) or once every build is done as well
 * (STRICT); a service deploys only after its own build. Within a stage, `longest-first` (what the
 * planner does once it knows the durations from an earlier run) starts the longest builds and the
 * longest deploys first; `service` (its order on a first run) goes in service order.
 */
export function simulatePolicy(
  input: LowerBoundInput,
  mode: Policy,
  order: 'service' | 'longest-first' = 'longest-first',
): number {
  const jobs: Sim[] = input.stages.flatMap((stage, s) =>
    stage.map((j) => ({ ...j, stage: s, buildPhase: 'PENDING', buildEnd: 0, deployPhase: 'PENDING', deployEnd: 0 })),
  );
  const byBuild = [...jobs];
  const byDeploy = [...jobs];
  if (order === 'longest-first') {
    byBuild.sort((a, b) => a.stage - b.stage || b.build - a.build);
    byDeploy.sort((a, b) => a.stage - b.stage || b.deploy - a.deploy);
  }
  let now = 0;
  for (;;) {
    // Finish what ends now.
    for (const j of jobs) {
      if (j.buildPhase === 'RUNNING' && j.buildEnd <= now) j.buildPhase = 'DONE';
      if (j.deployPhase === 'RUNNING' && j.deployEnd <= now) j.deployPhase = 'DONE';
    }
    if (jobs.every((j) => j.deployPhase === 'DONE')) return now;
    // Start what may start now, as `advance` does.
    let builds = jobs.filter((j) => j.buildPhase === 'RUNNING').length;
    for (const j of byBuild) {
      if (builds >= input.maxBuilds) break;
      if (j.buildPhase !== 'PENDING') continue;
      j.buildPhase = 'RUNNING';
      j.buildEnd = now + j.build;
      builds++;
    }
    const buildsDone = jobs.every((j) => j.buildPhase === 'DONE');
    if (mode === 'PIPELINED' || buildsDone) {
      let deploys = jobs.filter((j) => j.deployPhase === 'RUNNING').length;
      for (let s = 0; s < input.stages.length; s++) {
        const members = byDeploy.filter((j) => j.stage === s);
        if (members.every((j) => j.deployPhase === 'DONE')) continue;
        for (const j of members) {
          if (deploys >= input.maxDeploys) break;
          if (j.deployPhase !== 'PENDING' || j.buildPhase !== 'DONE') continue;
          j.deployPhase = 'RUNNING';
          j.deployEnd = now + j.deploy;
          deploys++;
        }
        break;
      }
    }
    const ends = jobs.flatMap((j) => [
      ...(j.buildPhase === 'RUNNING' ? [j.buildEnd] : []),
      ...(j.deployPhase === 'RUNNING' ? [j.deployEnd] : []),
    ]);
    if (ends.length === 0) throw new Error('simulation stuck: nothing running and nothing can start');
    now = Math.min(...ends);
  }
}
