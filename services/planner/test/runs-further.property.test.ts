import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EnvironmentFacts, RunState, ServiceFacts, ServiceRun, ServiceStateName } from '../src/domain/model.ts';
import { planRun } from '../src/domain/plan.ts';
import { admit, type OpenRun, queueStanding } from '../src/domain/queue.ts';
import {
  type EnvironmentShape,
  notResumable,
  resumeRefusals,
  resumeRun,
  type ServiceDefinition,
  succeededIn,
} from '../src/domain/resume.ts';
import { definitionChanges, rollbackDefinitions, rollbackSummary } from '../src/domain/rollback.ts';

// Issue 15's decisions: which run a queued run waits for, which services a resume runs (and when it
// is refused), what a rollback deploys and what it says it changes.

const STATES: ServiceStateName[] = ['QUEUED', 'DEPLOYED', 'DEPLOYMENT_ERROR', 'BUILD_ERROR', 'CANCELED', 'SKIPPED'];

function facts(n: number): EnvironmentFacts {
  const services: ServiceFacts[] = Array.from({ length: n }, (_, i) => ({
    id: `svc${i}`,
    name: `svc${i}`,
    kind: i === 0 ? 'LIFECYCLE_JOB' : 'CONTAINER',
    stageId: `st${i % 3}`,
    skipped: false,
    build: 'MIRROR',
    configuredVersion: 'tag:v2',
    current: { hasResources: true, stopped: false, version: 'tag:v1', image: 'm/x:v1' },
  }));
  return {
    environmentId: 'e',
    stages: [0, 1, 2].map((i) => ({ id: `st${i}`, name: `stage ${i}` })),
    services,
    maxParallelBuilds: 7,
    maxParallelDeploys: 7,
    mode: 'PIPELINED',
  };
}

/** A finished run of `env`'s services, each ending in the state drawn for it. */
function endedRun(env: EnvironmentFacts, states: ServiceStateName[], chained: (string | undefined)[]): RunState {
  const planned = planRun('prev', env, { action: 'DEPLOY', serviceIds: [], version: '', forceBuild: false });
  return {
    ...planned,
    status: 'FAILED',
    services: planned.services.map((s, i): ServiceRun => {
      const status = states[i] ?? 'QUEUED';
      const from = chained[i];
      return {
        ...s,
        status,
        finished: true,
        failed: status.endsWith('_ERROR'),
        version: 'tag:v2',
        image: `m/${s.serviceId}:v2`,
        ...(status === 'SKIPPED' && from !== undefined
          ? { succeededIn: from, message: `succeeded in run ${from}` }
          : {}),
      };
    }),
  };
}

const runArb = fc.integer({ min: 1, max: 7 }).chain((n) =>
  fc.record({
    n: fc.constant(n),
    states: fc.array(fc.constantFrom(...STATES), { minLength: n, maxLength: n }),
    chained: fc.array(fc.option(fc.constantFrom('older1', 'older2'), { nil: undefined }), {
      minLength: n,
      maxLength: n,
    }),
  }),
);

describe('the queue explains itself (property)', () => {
  it('each queued run waits for the run ahead of it: following waits_for from it visits `position` queued runs, then the active one', () => {
    const runArbQ = fc.uniqueArray(
      fc.record({
        id: fc.string({ minLength: 1, maxLength: 4 }),
        status: fc.constantFrom('QUEUED', 'QUEUED', 'RUNNING', 'CANCELING', 'SUCCEEDED'),
        createdAt: fc.integer({ min: 0, max: 20 }),
      }),
      { selector: (r) => r.id, maxLength: 10 },
    );
    fc.assert(
      fc.property(runArbQ, (runs) => {
        // At most one active run per environment.
        let seen = false;
        const open = runs.filter((r) => {
          if (r.status !== 'RUNNING' && r.status !== 'CANCELING') return true;
          if (seen) return false;
          seen = true;
          return true;
        });
        const active = open.find((r) => r.status === 'RUNNING' || r.status === 'CANCELING');
        const byId = new Map(open.map((r) => [r.id, r]));
        for (const r of open) {
          const standing = queueStanding(open, r.id);
          if (r.status !== 'QUEUED') {
            expect(standing).toEqual({ position: 0, waitsFor: '' });
            continue;
          }
          let hops = 1;
          let at = standing.waitsFor;
          while (at !== '' && byId.get(at)?.status === 'QUEUED') {
            hops++;
            at = queueStanding(open, at).waitsFor;
          }
          expect(hops).toBe(standing.position);
          expect(at).toBe(active?.id ?? '');
        }
      }),
    );
  });

  it('a request with other per-service versions, or a resume, never merges into a queued run', () => {
    const queued: OpenRun = {
      id: 'q',
      action: 'DEPLOY',
      status: 'QUEUED',
      requester: 'ana',
      version: '',
      serviceIds: [],
      forceBuild: false,
      createdAt: 1,
      versions: { a: 'tag:v1' },
    };
    const base = { action: 'DEPLOY' as const, requester: 'ana', version: '', serviceIds: [], forceBuild: false };
    expect(admit([queued], { ...base, versions: { a: 'tag:v1' } }).type).toBe('merge');
    expect(admit([queued], { ...base, versions: { a: 'tag:v2' } }).type).toBe('queue');
    expect(admit([queued], base).type).toBe('queue');
    expect(admit([queued], { ...base, versions: { a: 'tag:v1' }, resumeOf: 'x' }).type).toBe('queue');
    expect(admit([{ ...queued, resumeOf: 'x' }], { ...base, versions: { a: 'tag:v1' } }).type).toBe('queue');
  });
});

describe('resuming a run (property)', () => {
  it('runs exactly the services that did not succeed, with their planned work; the others are SKIPPED "succeeded in run X"', () => {
    fc.assert(
      fc.property(runArb, ({ n, states, chained }) => {
        const env = facts(n);
        const previous = endedRun(env, states, chained);
        const planned = planRun('next', env, { action: 'DEPLOY', serviceIds: [], version: '', forceBuild: false });
        const resumedRun = resumeRun(planned, previous, 'prev');
        resumedRun.services.forEach((s, i) => {
          const then = previous.services[i]!;
          const from = succeededIn(then, 'prev');
          if (from !== undefined) {
            expect(s.status).toBe('SKIPPED');
            expect(s.deploy).toBeNull();
            expect(s.build).toBeNull();
            expect(s.succeededIn).toBe(from);
            expect(s.message).toBe(`succeeded in run ${from}`);
            // A service reused from an earlier resume keeps the run it really succeeded in.
            if (then.status === 'SKIPPED') expect(from).toBe(then.succeededIn);
          } else {
            expect(s).toEqual(planned.services[i]);
          }
        });
        for (const st of resumedRun.stages) {
          const members = resumedRun.services.filter((s) => s.stageId === st.stageId);
          expect(st.status === 'SKIPPED').toBe(members.every((s) => s.status === 'SKIPPED'));
        }
      }),
    );
  });

  it('only FAILED or CANCELED runs can be resumed', () => {
    for (const status of ['QUEUED', 'RUNNING', 'CANCELING', 'SUCCEEDED', 'PLANNED']) {
      expect(notResumable(status)).toContain(status);
    }
    expect(notResumable('FAILED')).toBeUndefined();
    expect(notResumable('CANCELED')).toBeUndefined();
  });

  it('is refused, naming the change, when a service that succeeded changed, moved or went; a failed one may change', () => {
    fc.assert(
      fc.property(runArb, fc.nat(), fc.constantFrom('config', 'move', 'remove', 'runtime'), (run, pick, change) => {
        const env = facts(run.n);
        const previous = endedRun(env, run.states, run.chained);
        const definitions: ServiceDefinition[] = env.services.map((s) => ({
          id: s.id,
          name: s.name,
          stageId: s.stageId,
          envVars: [{ key: 'GREETING', value: 'hello', secret: false }],
          updatedAt: '2026-01-01T00:00:00Z',
        }));
        const then: EnvironmentShape = {
          runtime: 'local',
          namespace: '',
          stages: ['st0', 'st1', 'st2'],
          services: definitions,
        };
        expect(resumeRefusals(previous, 'prev', then, then)).toEqual([]);
        const target = previous.services[pick % previous.services.length]!;
        const succeeded = succeededIn(target, 'prev') !== undefined;
        const services = definitions.flatMap((d) => {
          if (d.id !== target.serviceId) return [d];
          if (change === 'remove') return [];
          if (change === 'move') return [{ ...d, stageId: 'elsewhere' }];
          if (change === 'config') return [{ ...d, envVars: [{ key: 'GREETING', value: 'hi', secret: false }] }];
          return [{ ...d, updatedAt: '2026-02-02T00:00:00Z' }];
        });
        const now = { ...then, services, runtime: change === 'runtime' ? 'kubernetes' : 'local' };
        const reasons = resumeRefusals(previous, 'prev', then, now);
        if (change === 'runtime') expect(reasons.join()).toContain('runtime');
        else if (change === 'remove') expect(reasons).toEqual([`service "${target.name}" was removed`]);
        else if (succeeded) expect(reasons.join()).toContain(`"${target.name}", which succeeded`);
        else expect(reasons).toEqual([]);
      }),
    );
  });
});

describe('rolling back to the environment as it was (property)', () => {
  const defArb = (id: string) =>
    fc.record({
      id: fc.constant(id),
      name: fc.constant(id),
      stageId: fc.constantFrom('st0', 'st1'),
      envVars: fc.uniqueArray(
        fc.record({ key: fc.constantFrom('A', 'B', 'C'), value: fc.constantFrom('', 'x', 'y'), secret: fc.boolean() }),
        { selector: (v) => v.key },
      ),
      container: fc.record({
        image: fc.constant('r/x'),
        ports: fc.array(fc.record({ port: fc.constantFrom(80, 8080) }), { maxLength: 1 }),
      }),
      strategy: fc.option(fc.record({ type: fc.constantFrom(1, 2) }), { nil: undefined }),
    });

  it('restored services deploy their definition then (keeping their place now); the rest stay as they are', () => {
    fc.assert(
      fc.property(
        fc.tuple(defArb('a'), defArb('b')),
        fc.tuple(defArb('a'), defArb('b')),
        fc.subarray(['a', 'b']),
        (now, then, restored) => {
          const out = rollbackDefinitions(now, then, new Set(restored));
          out.forEach((d, i) => {
            const current = now[i]!;
            const old = then[i]!;
            if (!restored.includes(d.id)) {
              expect(d).toBe(current);
              return;
            }
            expect(d.stageId).toBe(current.stageId);
            expect(d.container).toEqual(old.container);
            expect(d.strategy).toEqual(old.strategy);
            expect(d.envVars.map((v) => v.key)).toEqual(old.envVars.map((v) => v.key));
            d.envVars.forEach((v, j) => {
              const was = old.envVars[j]!;
              const kept = current.envVars.find((c) => c.key === v.key && c.secret)?.value;
              // A secret purged since (empty then) keeps its value now, when it has one.
              expect(v.value).toBe(was.secret && !was.value && kept ? kept : was.value);
            });
          });
        },
      ),
    );
  });

  it('says what changes by name, never a value; nothing when the definitions deploy the same', () => {
    fc.assert(
      fc.property(defArb('a'), defArb('a'), (now, then) => {
        expect(definitionChanges(now, now)).toEqual([]);
        const changes = definitionChanges(now, then).join('; ');
        for (const v of [...now.envVars, ...then.envVars]) {
          if (v.value !== '') expect(changes).not.toMatch(new RegExp(`\\b${v.value}\\b`));
        }
        const differs = (k: string) => {
          const a = now.envVars.find((v) => v.key === k);
          const b = then.envVars.find((v) => v.key === k);
          return (a === undefined) !== (b === undefined) || (a && b && (a.value !== b.value || a.secret !== b.secret));
        };
        for (const k of ['A', 'B', 'C'])
          expect(changes.includes(` ${k}`) || changes.includes(`, ${k}`)).toBe(!!differs(k));
        expect(changes.includes('container source')).toBe(
          JSON.stringify(now.container) !== JSON.stringify(then.container),
        );
      }),
    );
    expect(rollbackSummary({ version: 'tag:v2' }, { version: 'tag:v1' }, undefined, undefined)).toBe(
      'rollback: version tag:v2 → tag:v1',
    );
  });

  it('a rollback skips lifecycle jobs unless asked; a deploy pins per-service versions', () => {
    const env = facts(3);
    const rollbackTo = Object.fromEntries(env.services.map((s) => [s.id, { version: 'tag:v1', image: 'm/x:v1' }]));
    const base = { serviceIds: [], version: '', forceBuild: false };
    const job = (r: RunState) => r.services.find((s) => s.kind === 'LIFECYCLE_JOB')!;
    expect(job(planRun('r', env, { ...base, action: 'ROLLBACK', rollbackTo })).status).toBe('SKIPPED');
    expect(job(planRun('r', env, { ...base, action: 'ROLLBACK', rollbackTo, runLifecycleJobs: true })).status).toBe(
      'QUEUED',
    );
    const pinned = planRun('r', env, { ...base, action: 'DEPLOY', versions: { svc2: 'tag:v9' } });
    expect(pinned.services.map((s) => s.version)).toEqual(['tag:v2', 'tag:v2', 'tag:v9']);
  });
});
