import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ActionName, Decision, EnvironmentFacts, KindName, RunState, ServiceFacts } from '../src/domain/model.ts';
import { changedServices } from '../src/domain/outcomes.ts';
import { planRun } from '../src/domain/plan.ts';
import { advance, applyJobFact, countInFlight, requestCancel } from '../src/domain/schedule.ts';

// Random environments, actions, limits, durations and failures, simulated against the pure core.
// Workers are modelled as "each dispatched job finishes at some later tick, maybe failing".

const kindArb = fc.constantFrom<KindName>('DATABASE', 'LIFECYCLE_JOB', 'CRON_JOB', 'CONTAINER', 'APPLICATION');

const serviceArb = (stageCount: number) =>
  fc.record({
    kind: kindArb,
    stage: fc.nat({ max: stageCount - 1 }),
    skipped: fc.integer({ min: 0, max: 99 }).map((n) => n < 20),
    build: fc.constantFrom<ServiceFacts['build']>('GIT', 'MIRROR', null),
    hasResources: fc.boolean(),
    stopped: fc.boolean(),
    // Durations from earlier runs change the dispatch order, never the rules.
    expectedMs: fc.option(fc.record({ build: fc.nat(5000), deploy: fc.nat(5000) }, { requiredKeys: [] }), {
      nil: undefined,
    }),
  });

const envArb: fc.Arbitrary<EnvironmentFacts> = fc.integer({ min: 1, max: 5 }).chain((stageCount) =>
  fc
    .record({
      services: fc.array(serviceArb(stageCount), { maxLength: 25 }),
      maxParallelBuilds: fc.integer({ min: 1, max: 7 }),
      maxParallelDeploys: fc.integer({ min: 1, max: 7 }),
      mode: fc.constantFrom('PIPELINED' as const, 'STRICT' as const),
    })
    .map(({ services, ...limits }) => ({
      environmentId: 'env',
      stages: Array.from({ length: stageCount }, (_, i) => ({ id: `st${i}`, name: `stage ${i}` })),
      services: services.map((s, i) => ({
        id: `sv${i}`,
        name: `svc-${i}`,
        kind: s.kind,
        stageId: `st${s.stage}`,
        skipped: s.skipped,
        build: s.build,
        configuredVersion: 'v1',
        current: { hasResources: s.hasResources, stopped: s.hasResources && s.stopped, version: 'v0', image: 'img:v0' },
        ...(s.expectedMs !== undefined ? { expectedMs: s.expectedMs } : {}),
      })),
      ...limits,
    })),
);

interface Scenario {
  env: EnvironmentFacts;
  action: ActionName;
  serviceLevel: boolean;
  /** Per completion: which in-flight job finishes next (index modulo in-flight count) and whether it fails. */
  completions: { pick: number; fail: boolean }[];
  cancelAt: number | undefined;
}

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  env: envArb,
  action: fc.constantFrom<ActionName>('DEPLOY', 'REDEPLOY', 'STOP', 'RESTART', 'DELETE'),
  serviceLevel: fc.boolean(),
  completions: fc.array(fc.record({ pick: fc.nat(), fail: fc.integer({ min: 0, max: 99 }).map((n) => n < 8) }), {
    minLength: 200,
    maxLength: 200,
  }),
  cancelAt: fc.option(fc.nat({ max: 30 }), { nil: undefined }),
});

function simulate(sc: Scenario) {
  const serviceIds = sc.serviceLevel ? sc.env.services.filter((_, i) => i % 3 === 0).map((s) => s.id) : [];
  let state: RunState = planRun('run', sc.env, { action: sc.action, serviceIds, version: '', forceBuild: false });
  const rank = new Map(state.executionOrder.map((id, i) => [id, i]));
  const dispatched: { decision: Extract<Decision, { type: 'dispatch' }>; stateBefore: RunState }[] = [];
  const inFlight: Extract<Decision, { type: 'dispatch' }>[] = [];
  let firstFailureAt: number | undefined;
  let now = 0;
  const violations: string[] = [];

  const check = (before: RunState, decisions: Decision[], after: RunState) => {
    const { builds, deploys } = countInFlight(after);
    if (builds > after.maxBuilds) violations.push(`builds in flight ${builds} > ${after.maxBuilds}`);
    if (deploys > after.maxDeploys) violations.push(`deploys in flight ${deploys} > ${after.maxDeploys}`);
    for (const d of decisions) {
      if (d.type !== 'dispatch') continue;
      if (firstFailureAt !== undefined) violations.push('dispatched after a failure');
      if (before.cancelRequested) violations.push('dispatched after cancel');
      dispatched.push({ decision: d, stateBefore: before });
      inFlight.push(d);
      const svc = before.services.find((s) => s.serviceId === d.serviceId)!;
      const facts = sc.env.services.find((s) => s.id === d.serviceId)!;
      if (!sc.serviceLevel && facts.skipped && sc.action !== 'DELETE') violations.push(`skipped ${svc.name} touched`);
      if (d.role === 'deploy') {
        const myRank = rank.get(svc.stageId)!;
        for (const st of before.stages) {
          if (rank.get(st.stageId)! < myRank) {
            const members = before.services.filter((s) => s.stageId === st.stageId);
            if (!members.every((s) => s.finished && !s.failed))
              violations.push(`deploy in stage rank ${myRank} before earlier stage done`);
          }
        }
        if (svc.build !== null && svc.build.phase !== 'DONE') violations.push('deploy before its build');
        if (before.mode === 'STRICT' && before.services.some((s) => s.build !== null && s.build.phase !== 'DONE')) {
          violations.push('STRICT: deploy before every build');
        }
      }
    }
  };

  let r = advance(state, now);
  check(state, r.decisions, r.state);
  state = r.state;
  for (const [i, c] of sc.completions.entries()) {
    if (state.status === 'SUCCEEDED' || state.status === 'FAILED' || state.status === 'CANCELED') break;
    // What a step changes is told by identity (the store writes only those service runs, events carry
    // only those): a step copies what it changes and never changes a service in place.
    const startState = state;
    const startJson = startState.services.map((s) => JSON.stringify(s));
    now += 10;
    if (sc.cancelAt === i) {
      const canceled = requestCancel(state);
      state = canceled.state;
    }
    if (inFlight.length > 0) {
      const [job] = inFlight.splice(c.pick % inFlight.length, 1);
      const canceledRun = state.cancelRequested;
      state = applyJobFact(state, {
        type: 'stepStarted',
        jobId: job!.jobId,
        sequence: 1,
        kind: job!.role === 'build' ? 'BUILD' : 'DEPLOYMENT',
        at: now - 5,
        message: '',
      });
      if (c.fail && firstFailureAt === undefined && !canceledRun) firstFailureAt = i;
      state = applyJobFact(state, {
        type: 'jobFinished',
        jobId: job!.jobId,
        sequence: 2,
        succeeded: !c.fail && !canceledRun,
        state: canceledRun ? 'CANCELED' : c.fail ? 'QUEUED' : 'QUEUED',
        message: c.fail ? 'boom' : '',
        image: 'img:new',
        endpoints: [],
        at: now,
      });
      // A redelivered report changes nothing.
      const again = applyJobFact(state, {
        type: 'jobFinished',
        jobId: job!.jobId,
        sequence: 2,
        succeeded: true,
        state: 'QUEUED',
        message: '',
        image: '',
        endpoints: [],
        at: now,
      });
      if (again !== state) violations.push('a repeated report changed the run');
    }
    const before = state;
    r = advance(state, now);
    check(before, r.decisions, r.state);
    state = r.state;
    // Idempotent: advancing the same state again decides nothing new.
    if (advance(state, now).decisions.some((d) => d.type === 'dispatch')) violations.push('advance not idempotent');
    const changed = changedServices(startState, state);
    startState.services.forEach((s, k) => {
      if (JSON.stringify(s) !== startJson[k]) violations.push('a step changed a service run in place');
      if (JSON.stringify(state.services[k]) !== startJson[k] && !changed.has(s.serviceId)) {
        violations.push('a service run changed without being copied');
      }
    });
  }
  return { state, violations, dispatched, firstFailureAt };
}

const TERMINAL_SERVICE = new Set([
  'DEPLOYED',
  'STOPPED',
  'RESTARTED',
  'DELETED',
  'SKIPPED',
  'CANCELED',
  'BUILD_ERROR',
  'DEPLOYMENT_ERROR',
  'STOP_ERROR',
  'RESTART_ERROR',
  'DELETE_ERROR',
]);

describe('scheduling core (property)', () => {
  it('respects limits, stage order and skipped rules, and always finishes every service', () => {
    fc.assert(
      fc.property(scenarioArb, (sc) => {
        const { state, violations, firstFailureAt } = simulate(sc);
        expect(violations).toEqual([]);
        expect(['SUCCEEDED', 'FAILED', 'CANCELED']).toContain(state.status);
        for (const s of state.services) {
          expect(TERMINAL_SERVICE.has(s.status), `${s.name} ended ${s.status}`).toBe(true);
          expect(s.steps.every((st) => st.finishedAt !== null)).toBe(true);
        }
        expect(countInFlight(state)).toEqual({ builds: 0, deploys: 0 });
        if (firstFailureAt !== undefined) {
          expect(state.status).toBe('FAILED');
          const failing = state.services.filter((s) => s.failed).map((s) => s.stageId);
          for (const st of state.stages) {
            if (failing.includes(st.stageId)) expect(st.status).toBe('ERROR');
            else expect(['DONE', 'CANCELED', 'SKIPPED']).toContain(st.status);
          }
        } else if (state.status === 'SUCCEEDED') {
          expect(state.stages.every((st) => st.status === 'DONE' || st.status === 'SKIPPED')).toBe(true);
        }
      }),
      { numRuns: 400 },
    );
  });
});
