import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ServiceRun } from '../src/domain/model.ts';
import { activeEnvironmentStatus, changedServices, environmentStatus } from '../src/domain/outcomes.ts';
import { rollbackTargets } from '../src/domain/rollback.ts';

// The environment's status from its facts, the services a report changed, what a rollback restores.

const stateArb = fc.constantFrom(
  'QUEUED',
  'DEPLOYED',
  'STOPPED',
  'DELETED',
  'DEPLOYMENT_ERROR',
  'STOP_ERROR',
  'DELETE_ERROR',
  'RESTART_ERROR',
  'RESTARTED',
);
const standingArb = fc.record({ state: stateArb, hasResources: fc.boolean(), stopped: fc.boolean() });
const actionArb = fc.constantFrom('DEPLOY', 'REDEPLOY', 'STOP', 'RESTART', 'DELETE', 'ROLLBACK');
const runServicesArb = fc.array(
  fc.record({ status: fc.constantFrom('QUEUED', 'BUILDING', 'MIRRORING', 'DEPLOYING') }),
  {
    maxLength: 3,
  },
);

describe('environmentStatus', () => {
  it('deleted wins; then the active run; then the queue; then the services at rest', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.option(
          fc.record({ action: actionArb, state: fc.option(fc.record({ services: runServicesArb }), { nil: null }) }),
          {
            nil: undefined,
          },
        ),
        fc.boolean(),
        fc.array(standingArb, { maxLength: 5 }),
        (deleted, active, anyOpen, services) => {
          const status = environmentStatus({
            deleted,
            active: active as never,
            anyOpen: anyOpen || active !== undefined,
            services,
          });
          if (deleted) {
            expect(status).toBe('DELETED');
            return;
          }
          const activeStatus = active && activeEnvironmentStatus(active.action, active.state as never);
          if (activeStatus !== undefined) {
            expect(status).toBe(activeStatus);
            return;
          }
          if (anyOpen || active !== undefined) {
            expect(status).toBe('QUEUED');
            return;
          }
          const live = services.filter((s) => s.hasResources);
          if (services.some((s) => s.state.endsWith('_ERROR'))) {
            expect(status).toMatch(/_ERROR$/);
            if (services.some((s) => s.state === 'DELETE_ERROR')) expect(status).toBe('DELETE_ERROR');
          } else if (live.length === 0) expect(status).toBe('NEVER_DEPLOYED');
          else expect(status).toBe(live.every((s) => s.stopped) ? 'STOPPED' : 'DEPLOYED');
        },
      ),
    );
  });
});

const run = (serviceId: string, over: Partial<ServiceRun> = {}) =>
  ({
    serviceId,
    status: 'QUEUED',
    image: '',
    kind: 'CONTAINER',
    build: null,
    version: 'tag:v1',
    ...over,
  }) as ServiceRun;

describe('changedServices', () => {
  it('names exactly the services whose run object was replaced', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }), (replace) => {
        const before = { services: replace.map((_, i) => run(`s${i}`)) };
        const after = { services: before.services.map((s, i) => (replace[i] ? { ...s } : s)) };
        expect([...changedServices(before, after)].sort()).toEqual(
          before.services
            .filter((_, i) => replace[i])
            .map((s) => s.serviceId)
            .sort(),
        );
      }),
    );
  });
});

describe('rollbackTargets', () => {
  it('restores services the target deployed with an image, a managed database, or a kept revision', () => {
    const targets = rollbackTargets([
      run('img', { status: 'DEPLOYED', image: 'r/a@sha256:1', version: 'tag:v1' }),
      run('noimg', { status: 'DEPLOYED' }),
      run('db', { status: 'DEPLOYED', kind: 'DATABASE', build: null, version: 'tag:16' }),
      run('rev', { status: 'DEPLOYED', version: 'revision:3' }),
      run('failed', { status: 'DEPLOYMENT_ERROR', image: 'r/b@sha256:2' }),
      run('skipped', { status: 'SKIPPED', image: 'r/c@sha256:3' }),
    ]);
    expect(targets).toEqual({
      img: { version: 'tag:v1', image: 'r/a@sha256:1' },
      db: { version: 'tag:16', image: '' },
      rev: { version: 'revision:3', image: '' },
    });
  });
});
