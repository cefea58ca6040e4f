// What changed in a run between two of its states, as operators follow it: the run started, a stage
// moved on, the run finished. Pure: the app logs each one (one info line) and counts finished runs once
// the transaction that made the change has committed.
import { isTerminalRun, type RunState, type RunStatusName, type StageStatusName } from './model.ts';

export type RunTransition =
  | { kind: 'started' }
  | { kind: 'stage'; stageId: string; name: string; order: number; status: StageStatusName }
  | { kind: 'finished'; status: RunStatusName; seconds: number | null };

/** A stage's status a run starts with: not news. */
const INITIAL_STAGE: StageStatusName = 'QUEUED';

/**
 * The transitions from `before` (undefined: the run had no state yet) to `after`, in this order: the
 * start, the stages that changed status (in pipeline order), the end.
 */
export function runTransitions(before: RunState | undefined, after: RunState): RunTransition[] {
  const out: RunTransition[] = [];
  if ((before?.startedAt ?? null) === null && after.startedAt !== null) out.push({ kind: 'started' });
  const was = new Map((before?.stages ?? []).map((s) => [s.stageId, s.status]));
  for (const stage of [...after.stages].sort((a, b) => a.order - b.order)) {
    const previous = was.get(stage.stageId) ?? INITIAL_STAGE;
    if (stage.status === previous) continue;
    out.push({ kind: 'stage', stageId: stage.stageId, name: stage.name, order: stage.order, status: stage.status });
  }
  if (isTerminalRun(after.status) && !(before !== undefined && isTerminalRun(before.status))) {
    const seconds =
      after.startedAt !== null && after.finishedAt !== null
        ? Math.max(0, (after.finishedAt - after.startedAt) / 1000)
        : null;
    out.push({ kind: 'finished', status: after.status, seconds });
  }
  return out;
}
