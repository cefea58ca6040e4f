import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RunState, ServiceRun } from '../src/domain/model.ts';
import { type DispatchedJob, dispatchedJobs, lostJobs } from '../src/domain/recovery.ts';

function service(id: string, phase: 'PENDING' | 'DISPATCHED' | 'DONE', role: 'build' | 'deploy'): ServiceRun {
  const slot = {
    role,
    what: role === 'build' ? 'GIT' : 'DEPLOY',
    phase,
    jobId: `${id}:${role}`,
    attempt: 1,
    lastSequence: 0,
  } as const;
  return {
    serviceId: id,
    name: id,
    kind: 'CONTAINER',
    stageId: 'stage',
    status: 'DEPLOYING',
    version: '',
    image: '',
    build: role === 'build' ? slot : null,
    deploy: role === 'deploy' ? slot : null,
    steps: [],
    finished: false,
  } as unknown as ServiceRun;
}

const run = (status: RunState['status'], services: ServiceRun[]) => ({ status, services }) as unknown as RunState;

describe('dispatchedJobs', () => {
  it('lists the jobs a running run waits for, and none of a finished run', () => {
    const services = [
      service('a', 'DISPATCHED', 'deploy'),
      service('b', 'DONE', 'deploy'),
      service('c', 'DISPATCHED', 'build'),
    ];
    expect(dispatchedJobs('r', run('RUNNING', services))).toEqual([
      { deploymentId: 'r', serviceId: 'a', role: 'deploy', jobId: 'a:deploy' },
      { deploymentId: 'r', serviceId: 'c', role: 'build', jobId: 'c:build' },
    ]);
    expect(dispatchedJobs('r', run('SUCCEEDED', services))).toEqual([]);
  });
});

describe('lostJobs', () => {
  const job = (n: number, role: 'build' | 'deploy'): DispatchedJob => ({
    deploymentId: 'r',
    serviceId: `s${n}`,
    role,
    jobId: `j${n}`,
  });

  it('is exactly the jobs last published before their stream was created', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            role: fc.constantFrom('build' as const, 'deploy' as const),
            published: fc.option(fc.option(fc.integer({ min: 0, max: 100 }), { nil: null }), { nil: undefined }),
          }),
          { maxLength: 20 },
        ),
        fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
        fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
        (specs, buildCreated, deployCreated) => {
          const jobs = specs.map((s, i) => job(i, s.role));
          const published = new Map<string, number | null>();
          specs.forEach((s, i) => {
            if (s.published !== undefined) published.set(`j${i}`, s.published);
          });
          const created = { build: buildCreated, deploy: deployCreated };
          const lost = lostJobs(jobs, published, {
            ...(buildCreated === undefined ? {} : { build: buildCreated }),
            ...(deployCreated === undefined ? {} : { deploy: deployCreated }),
          });
          for (const [i, s] of specs.entries()) {
            const c = created[s.role];
            const expected = c !== undefined && typeof s.published === 'number' && s.published < c;
            expect(lost.some((l) => l.jobId === `j${i}`)).toBe(expected);
          }
        },
      ),
    );
  });
});
