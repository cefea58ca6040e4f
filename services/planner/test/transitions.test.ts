// What operators are told about a run: its start once, each stage that moved on (in pipeline order),
// its end once with how long it took — never a transition that did not happen.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RunState, RunStatusName, StageStatusName } from '../src/domain/model.ts';
import { runTransitions } from '../src/domain/transitions.ts';

const STAGE_STATUSES: StageStatusName[] = ['QUEUED', 'ONGOING', 'DONE', 'ERROR', 'SKIPPED', 'CANCELED'];
const RUN_STATUSES: RunStatusName[] = ['PLANNED', 'QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELING', 'CANCELED'];

function run(over: Partial<Omit<RunState, 'stages'>> & { stages?: Array<[string, StageStatusName]> } = {}): RunState {
  const { stages, ...rest } = over;
  return {
    id: 'r',
    action: 'DEPLOY',
    status: 'RUNNING',
    executionOrder: [],
    stages: (stages ?? [['a', 'QUEUED']]).map(([id, status], order) => ({ stageId: id, name: id, order, status })),
    services: [],
    maxBuilds: 7,
    maxDeploys: 7,
    mode: 'PIPELINED',
    forceBuild: false,
    cancelRequested: false,
    message: '',
    startedAt: 1_000,
    finishedAt: null,
    ...rest,
  };
}

describe('run transitions', () => {
  it('a new run: started, then the stages that are already past QUEUED', () => {
    const after = run({
      stages: [
        ['db', 'ONGOING'],
        ['app', 'QUEUED'],
      ],
    });
    expect(runTransitions(undefined, after)).toEqual([
      { kind: 'started' },
      { kind: 'stage', stageId: 'db', name: 'db', order: 0, status: 'ONGOING' },
    ]);
  });

  it('a stage done and the next one going, in pipeline order; the end once, with its seconds', () => {
    const before = run({
      stages: [
        ['db', 'ONGOING'],
        ['app', 'QUEUED'],
      ],
    });
    const after = run({
      status: 'SUCCEEDED',
      finishedAt: 3_500,
      stages: [
        ['db', 'DONE'],
        ['app', 'DONE'],
      ],
    });
    expect(runTransitions(before, after)).toEqual([
      { kind: 'stage', stageId: 'db', name: 'db', order: 0, status: 'DONE' },
      { kind: 'stage', stageId: 'app', name: 'app', order: 1, status: 'DONE' },
      { kind: 'finished', status: 'SUCCEEDED', seconds: 2.5 },
    ]);
    // Told once: a finished run that stays finished is not news.
    expect(runTransitions(after, after)).toEqual([]);
  });

  it('tells exactly the stages whose status changed, and starts and ends only on the edges', () => {
    const stageStatuses = fc.array(fc.constantFrom(...STAGE_STATUSES), { minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(
        stageStatuses.chain((a) =>
          fc.tuple(
            fc.constant(a),
            fc.array(fc.constantFrom(...STAGE_STATUSES), { minLength: a.length, maxLength: a.length }),
          ),
        ),
        fc.constantFrom(...RUN_STATUSES),
        fc.constantFrom(...RUN_STATUSES),
        fc.boolean(),
        ([was, now], beforeStatus, afterStatus, startedBefore) => {
          const before = run({
            status: beforeStatus,
            startedAt: startedBefore ? 1 : null,
            stages: was.map((s, i) => [`s${i}`, s]),
          });
          const after = run({
            status: afterStatus,
            startedAt: 1,
            finishedAt: 2,
            stages: now.map((s, i) => [`s${i}`, s]),
          });
          const told = runTransitions(before, after);
          const changed = was.filter((s, i) => s !== now[i]).length;
          expect(told.filter((t) => t.kind === 'stage').length).toBe(changed);
          expect(told.filter((t) => t.kind === 'started').length).toBe(startedBefore ? 0 : 1);
          const ends = ['SUCCEEDED', 'FAILED', 'CANCELED'];
          const finished = ends.includes(afterStatus) && !ends.includes(beforeStatus);
          expect(told.filter((t) => t.kind === 'finished').length).toBe(finished ? 1 : 0);
          expect(runTransitions(after, after)).toEqual([]);
        },
      ),
    );
  });
});
