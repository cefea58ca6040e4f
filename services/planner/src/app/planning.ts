// Planning a run from the environment's snapshot and what the planner keeps: its services' standing,
// how long their last builds and deploys took, a rollback's target, a resume's previous run.
import type { snapshot } from '@stageline/proto';
import type { RunRequest, RunState } from '../domain/model.ts';
import { expectedDurations, planRun } from '../domain/plan.ts';
import { rollbackTargets } from '../domain/rollback.ts';
import type { Snapshot } from './context.ts';
import type { RunHead, RunReads } from './run-store.ts';
import { resumed } from './runs-further.ts';
import { type CurrentRow, factsFrom } from './wire.ts';

export type PlanInput = Pick<
  RunHead,
  'id' | 'action' | 'serviceIds' | 'version' | 'forceBuild' | 'toDeploymentId' | 'options'
>;

export async function planFor(reads: RunReads, row: PlanInput, snap: Snapshot): Promise<RunState> {
  const environmentId = snap.environment.id;
  const statuses = await reads.serviceStatuses(environmentId);
  const current = new Map<string, CurrentRow>(statuses.map((s) => [s.serviceId, s]));
  const facts = factsFrom(snap as snapshot.GetEnvironmentSnapshotResponse, current);
  // The environment's last few finished runs: how long each service's build and deploy took.
  const expected = expectedDurations(await reads.recentStates(environmentId, 5));
  for (const f of facts.services) {
    const known = expected.get(f.id);
    if (known !== undefined) f.expectedMs = known;
    const source = snap.services.find((x) => x.id === f.id)?.source;
    if (f.kind === 'LIFECYCLE_JOB' && source?.$case === 'job') {
      f.runsOn = { deploy: source.value.onDeploy, stop: source.value.onStop, delete: source.value.onDelete };
    }
  }
  const request: RunRequest = {
    action: row.action as RunRequest['action'],
    serviceIds: row.serviceIds,
    version: row.version,
    forceBuild: row.forceBuild,
    ...(row.options?.versions ? { versions: row.options.versions } : {}),
    ...(row.options?.runLifecycleJobs ? { runLifecycleJobs: true } : {}),
  };
  if (row.action === 'ROLLBACK' && row.toDeploymentId) {
    request.rollbackTo = rollbackTargets((await reads.runState(row.toDeploymentId))?.services ?? []);
  }
  return resumed(reads, row.options, planRun(row.id, facts, request));
}
