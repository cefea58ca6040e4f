import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { paint, visibleLength } from '../src/view/format.ts';
import { changeLines, progressOf, renderFrame, summaryLines } from '../src/view/run-view.ts';

const { ServiceState: SS, StageStatus: ST, StepKind: K, StepOutcome: O, DeploymentStatus: DS } = control;
const t0 = Date.parse('2030-01-01T10:00:00Z');
const at = (s: number) => new Date(t0 + s * 1000);

function run(overrides: Partial<control.Deployment> = {}): control.Deployment {
  return control.Deployment.fromPartial({
    id: '01900000-0000-7000-8000-000000000001',
    environmentId: 'env',
    action: control.Action.ACTION_DEPLOY,
    status: DS.DEPLOYMENT_STATUS_RUNNING,
    createdAt: at(0),
    startedAt: at(0),
    stages: [
      { stageId: 's0', name: 'DEFAULT DATABASE', order: 0, status: ST.STAGE_STATUS_SKIPPED },
      { stageId: 's2', name: 'backend', order: 1, status: ST.STAGE_STATUS_ONGOING },
      { stageId: 's4', name: 'frontend', order: 2, status: ST.STAGE_STATUS_QUEUED },
    ],
    services: [
      {
        serviceId: 'a',
        name: 'api',
        stageId: 's2',
        status: SS.SERVICE_STATE_DEPLOYED,
        steps: [
          { kind: K.STEP_KIND_MIRROR_IMAGE, startedAt: at(0), finishedAt: at(0.4), outcome: O.STEP_OUTCOME_CACHE_HIT },
          { kind: K.STEP_KIND_DEPLOYMENT, startedAt: at(0.5), finishedAt: at(2.6), outcome: O.STEP_OUTCOME_SUCCESS },
        ],
      },
      {
        serviceId: 'm',
        name: 'migrate',
        stageId: 's2',
        status: SS.SERVICE_STATE_DEPLOYING,
        steps: [
          { kind: K.STEP_KIND_MIRROR_IMAGE, startedAt: at(0), finishedAt: at(0.3), outcome: O.STEP_OUTCOME_SUCCESS },
          { kind: K.STEP_KIND_DEPLOYMENT, startedAt: at(0.4) },
        ],
      },
      { serviceId: 'w', name: 'web', stageId: 's4', status: SS.SERVICE_STATE_QUEUED, steps: [] },
    ],
    ...overrides,
  });
}

const context = { title: 'deploy demo/staging', plan: undefined, failureLogs: new Map<string, string[]>() };
const frame = (d: control.Deployment, width = 100, height = 30, color = false) =>
  renderFrame({ run: d, context, now: t0 + 5000, tick: 0, width, height, paint: paint(color) });

describe('live view', () => {
  it('shows every stage in order and every service with state, current step, elapsed time and progress', () => {
    const lines = frame(run());
    const text = lines.join('\n');
    expect(lines[0]).toContain('deploy demo/staging');
    expect(lines[0]).toContain('RUNNING');
    expect(lines[1]).toContain('1/3 services finished');
    const order = ['DEFAULT DATABASE', 'backend', 'api', 'migrate', 'frontend', 'web'].map((n) => text.indexOf(n));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    const migrate = lines.find((l) => l.includes('migrate'))!;
    expect(migrate).toContain('DEPLOYING');
    expect(migrate).toContain('DEPLOYMENT');
    expect(migrate).toContain('5.0s');
    expect(migrate).toContain('▰▱ 1/2');
    expect(lines.find((l) => l.includes(' api '))).toContain('▰▰ 2/2');
  });

  it('shows the queue position while QUEUED', () => {
    const lines = frame(run({ status: DS.DEPLOYMENT_STATUS_QUEUED, queuePosition: 2, stages: [], services: [] }));
    expect(lines[1]).toContain('position 2');
  });

  it('shows the failing step with its last log lines', () => {
    const failed = run();
    failed.services[1] = {
      ...failed.services[1]!,
      status: SS.SERVICE_STATE_DEPLOYMENT_ERROR,
      steps: [
        {
          kind: K.STEP_KIND_DEPLOYMENT,
          startedAt: at(0.4),
          finishedAt: at(3),
          outcome: O.STEP_OUTCOME_ERROR,
          message: 'container exited with code 3',
        },
      ],
    };
    const lines = renderFrame({
      run: failed,
      context: { ...context, failureLogs: new Map([['m', ['error: relation users does not exist']]]) },
      now: t0 + 5000,
      tick: 0,
      width: 100,
      height: 30,
      paint: paint(false),
    });
    const text = lines.join('\n');
    expect(text).toContain('DEPLOYMENT failed');
    expect(text).toContain('container exited with code 3');
    expect(text).toContain('│ error: relation users does not exist');
  });

  it('fits the terminal: no line wider than it, no more lines than it has rows', () => {
    const lines = frame(run(), 40, 6, true);
    expect(lines.length).toBeLessThanOrEqual(5);
    for (const l of lines) expect(visibleLength(l)).toBeLessThan(40);
    expect(lines.at(-1)).toContain('more lines');
  });

  it('counts progress against the planned steps', () => {
    const s = run().services[1]!;
    expect(progressOf(s, [K.STEP_KIND_MIRROR_IMAGE, K.STEP_KIND_DEPLOYMENT_QUEUEING, K.STEP_KIND_DEPLOYMENT])).toEqual({
      done: 1,
      total: 2,
    });
    expect(progressOf(s, undefined)).toEqual({ done: 1, total: 2 });
  });
});

describe('plain output (not a terminal)', () => {
  it('says which run a queued run waits for, and that a request was merged into it', () => {
    const queued = run({
      status: DS.DEPLOYMENT_STATUS_QUEUED,
      queuePosition: 2,
      waitsFor: 'run-ahead',
      merged: true,
      stages: [],
      services: [],
    });
    expect(changeLines(undefined, queued, t0)).toEqual([
      '2030-01-01T10:00:00.000Z merged: this request joined queued run 01900000-0000-7000-8000-000000000001',
      '2030-01-01T10:00:00.000Z run 01900000-0000-7000-8000-000000000001 QUEUED (queue position 2, 1 = next, waits for run run-ahead)',
    ]);
    const next = { ...queued, merged: false, queuePosition: 1, waitsFor: 'run-running' };
    expect(changeLines(queued, next, t0)).toEqual([
      '2030-01-01T10:00:00.000Z run 01900000-0000-7000-8000-000000000001 QUEUED (queue position 1, 1 = next, waits for run run-running)',
    ]);
  });

  it('writes one timestamped line per change, without control sequences', () => {
    const first = run({ status: DS.DEPLOYMENT_STATUS_QUEUED, queuePosition: 1, stages: [], services: [] });
    const second = run();
    const lines = [...changeLines(undefined, first, t0), ...changeLines(first, second, t0 + 1000)];
    expect(lines[0]).toBe(
      '2030-01-01T10:00:00.000Z run 01900000-0000-7000-8000-000000000001 QUEUED (queue position 1, 1 = next)',
    );
    expect(lines).toContain('2030-01-01T10:00:01.000Z stage 1 "backend" ONGOING');
    expect(lines).toContain('2030-01-01T10:00:01.000Z migrate step DEPLOYMENT started');
    expect(lines).toContain('2030-01-01T10:00:01.000Z api step DEPLOYMENT SUCCESS in 2.1s');
    for (const l of lines) {
      expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /);
      // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting their absence
      expect(l).not.toMatch(/[\x00-\x1f\x7f]/);
    }
    expect(changeLines(second, second, t0 + 2000)).toEqual([]);
  });
});

describe('summary', () => {
  it('lists stages and services with step durations and outcomes', () => {
    const done = run({ status: DS.DEPLOYMENT_STATUS_SUCCEEDED, finishedAt: at(6) });
    const lines = summaryLines(done, context, paint(false), t0 + 10_000);
    expect(lines[0]).toBe('deploy demo/staging: run 01900000-0000-7000-8000-000000000001 SUCCEEDED in 6.0s');
    const api = lines.find((l) => l.includes('api'))!;
    expect(api).toContain('MIRROR_IMAGE 0.4s (cache hit) · DEPLOYMENT 2.1s');
    expect(lines.indexOf(lines.find((l) => l.includes('stage 1'))!)).toBeLessThan(lines.indexOf(api));
  });
});
