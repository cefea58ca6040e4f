import { control } from '@stageline/proto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { overdueJobs, workBudgetMs } from '../src/app/deadlines.ts';
import type { RunState, ServiceRun } from '../src/domain/model.ts';

const limits = { queueMs: 60_000, graceMs: 10_000 };

/** A run with one service whose deploy job was dispatched at `dispatchedAt` and, maybe, taken at `takenAt`. */
function run(dispatchedAt: number, takenAt?: number): RunState {
  const service: ServiceRun = {
    serviceId: 'svc',
    name: 'web',
    kind: 'CONTAINER',
    stageId: 'stage',
    status: 'DEPLOYING',
    version: '',
    image: '',
    build: null,
    deploy: {
      role: 'deploy',
      what: 'DEPLOY',
      phase: 'DISPATCHED',
      jobId: 'run:svc:deploy:1',
      attempt: 1,
      lastSequence: 0,
    },
    steps: [
      {
        kind: 'DEPLOYMENT_QUEUEING',
        startedAt: dispatchedAt,
        finishedAt: takenAt ?? null,
        outcome: takenAt === undefined ? null : 'SUCCESS',
        message: '',
      },
      ...(takenAt === undefined
        ? []
        : [{ kind: 'DEPLOYMENT' as const, startedAt: takenAt, finishedAt: null, outcome: null, message: '' }]),
    ],
    finished: false,
    failed: false,
    message: '',
    endpoints: [],
    outputs: {},
  };
  return {
    id: 'run',
    action: 'DEPLOY',
    status: 'RUNNING',
    executionOrder: ['stage'],
    stages: [{ stageId: 'stage', name: 'DEFAULT', order: 0, status: 'ONGOING' }],
    services: [service],
    maxBuilds: 7,
    maxDeploys: 7,
    mode: 'PIPELINED',
    forceBuild: false,
    cancelRequested: false,
    message: '',
    startedAt: dispatchedAt,
    finishedAt: null,
  };
}

const web = control.Service.fromPartial({ id: 'svc', readinessTimeoutSeconds: 30 });

describe('job deadlines', () => {
  it('fails a job no worker takes once it has waited past the queue limit, not before', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10 * 60_000 }), (waited) => {
        const overdue = overdueJobs(run(1_000), () => web, 1_000 + waited, limits);
        expect(overdue.length).toBe(waited > limits.queueMs ? 1 : 0);
        if (overdue.length > 0) expect(overdue[0]!.reason).toBe('no deploy worker took the job within 60 s');
      }),
    );
  });

  it('fails a taken job once past its own budget and the grace, however long it queued', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10 * 60_000 }),
        fc.integer({ min: 0, max: 10 * 60_000 }),
        (queued, worked) => {
          const overdue = overdueJobs(run(0, queued), () => web, queued + worked, limits);
          const deadline = 30_000 + limits.graceMs;
          expect(overdue.length).toBe(worked > deadline ? 1 : 0);
          if (overdue.length > 0) {
            expect(overdue[0]).toMatchObject({ jobId: 'run:svc:deploy:1', role: 'deploy', serviceId: 'svc' });
            expect(overdue[0]!.reason).toBe('the deploy job reported no end within its deadline of 40 s');
          }
        },
      ),
    );
  });

  it('leaves finished runs and finished jobs alone', () => {
    const done = { ...run(0), status: 'FAILED' as const };
    expect(overdueJobs(done, () => web, 10 ** 9, limits)).toEqual([]);
    const state = run(0, 1);
    state.services[0]!.deploy!.phase = 'DONE';
    expect(overdueJobs(state, () => web, 10 ** 9, limits)).toEqual([]);
  });

  it("budgets a job by the service's own limits", () => {
    expect(workBudgetMs(control.Service.fromPartial({}), 'deploy')).toBe(300_000);
    expect(
      workBudgetMs(
        control.Service.fromPartial({ source: { $case: 'application', value: { buildTimeoutSeconds: 600 } } }),
        'build',
      ),
    ).toBe(600_000);
    expect(
      workBudgetMs(
        control.Service.fromPartial({ source: { $case: 'job', value: { maxDurationSeconds: 100, maxRetries: 2 } } }),
        'deploy',
      ),
    ).toBe(360_000);
  });
});
