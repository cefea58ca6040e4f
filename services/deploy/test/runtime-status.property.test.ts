// The running-status rule (domain/runtime-status.ts): a service's state from its release and instances.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RELEASE_STATUSES } from '../src/domain/release.ts';
import {
  instanceFromKubePod,
  instanceFromPodman,
  kubePodsByRelease,
  parseKubectlPrefixed,
  parseTimestamped,
} from '../src/domain/runtime-facts.ts';
import { exitReason, type InstanceFacts, RECENT_RESTART_MS, serviceStatus } from '../src/domain/runtime-status.ts';

const WORKLOAD_KINDS = ['CONTAINER', 'APPLICATION', 'DATABASE', 'CUSTOM_CHART', ''];

const NOW = new Date('2026-12-04T12:00:00Z');
const instance: fc.Arbitrary<InstanceFacts> = fc.record(
  {
    name: fc.string({ minLength: 1, maxLength: 8 }),
    state: fc.constantFrom('running', 'exited', 'created', 'waiting: CrashLoopBackOff'),
    ready: fc.boolean(),
    restarts: fc.nat(20),
    // Started from 10 minutes ago to now.
    startedAt: fc.integer({ min: 0, max: 600_000 }).map((ago) => new Date(NOW.getTime() - ago)),
  },
  { requiredKeys: ['name', 'state', 'ready', 'restarts'] },
);

const liveStatus = fc.constantFrom<'DEPLOYED' | 'STOPPED'>('DEPLOYED', 'STOPPED');

describe('serviceStatus (property)', () => {
  it('a deployed workload: RUNNING iff every instance is ready and none restarting, ERROR iff none is ready, WARNING otherwise', () => {
    fc.assert(
      fc.property(fc.constantFrom(...WORKLOAD_KINDS), fc.array(instance, { maxLength: 6 }), (kind, instances) => {
        const { state } = serviceStatus({ kind, releaseStatus: 'DEPLOYED', instances, now: NOW });
        const ready = instances.filter((i) => i.ready).length;
        const restarting = instances.some(
          (i) =>
            i.restarts > 0 && i.startedAt !== undefined && NOW.getTime() - i.startedAt.getTime() < RECENT_RESTART_MS,
        );
        if (instances.length > 0 && ready === instances.length && !restarting) expect(state).toBe('RUNNING');
        else if (ready === 0) expect(state).toBe('ERROR');
        else expect(state).toBe('WARNING');
      }),
    );
  });

  it('a crash loop that looks running (restarted a moment ago) is WARNING, settled again after the window', () => {
    const looping: InstanceFacts = {
      name: 'web-pod-0',
      state: 'running',
      ready: true,
      restarts: 5,
      startedAt: new Date(NOW.getTime() - 2_000),
      lastExit: { code: 1, reason: 'error' },
    };
    expect(serviceStatus({ kind: 'CONTAINER', releaseStatus: 'DEPLOYED', instances: [looping], now: NOW })).toEqual({
      state: 'WARNING',
      message: '1 of 1 instance ready, 5 restarts (1 restarting); exited with code 1 (error)',
    });
    const later = new Date(NOW.getTime() + RECENT_RESTART_MS);
    expect(
      serviceStatus({ kind: 'CONTAINER', releaseStatus: 'DEPLOYED', instances: [looping], now: later }).state,
    ).toBe('RUNNING');
  });

  it('does not depend on the order instances are listed in', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...WORKLOAD_KINDS),
        liveStatus,
        fc.array(instance, { maxLength: 6 }),
        fc.nat(),
        (kind, releaseStatus, instances, seed) => {
          const shuffled = [...instances].sort(
            (a, b) => ((a.name.length * 31 + seed) % 7) - ((b.name.length * 31 + seed) % 7),
          );
          expect(serviceStatus({ kind, releaseStatus, instances: shuffled }).state).toBe(
            serviceStatus({ kind, releaseStatus, instances }).state,
          );
        },
      ),
    );
  });

  it('a STOPPED release is STOPPED whatever its instances say', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...WORKLOAD_KINDS, 'LIFECYCLE_JOB', 'CRON_JOB', 'MANAGED_DATABASE'),
        fc.option(fc.array(instance, { maxLength: 4 }), { nil: undefined }),
        (kind, instances) => {
          expect(serviceStatus({ kind, releaseStatus: 'STOPPED', instances }).state).toBe('STOPPED');
        },
      ),
    );
  });

  it('jobs are never WARNING; a lifecycle job that ran is COMPLETED', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('LIFECYCLE_JOB', 'CRON_JOB'),
        fc.option(
          fc.record({
            status: fc.constantFrom<'RUNNING' | 'SUCCEEDED' | 'FAILED'>('RUNNING', 'SUCCEEDED', 'FAILED'),
            exitCode: fc.integer({ min: 0, max: 255 }),
            message: fc.string({ maxLength: 10 }),
          }),
          { nil: undefined },
        ),
        fc.array(instance, { maxLength: 3 }),
        (kind, lastRun, instances) => {
          const { state } = serviceStatus({
            kind,
            releaseStatus: 'DEPLOYED',
            instances,
            ...(lastRun !== undefined ? { lastRun } : {}),
          });
          expect(state).not.toBe('WARNING');
          if (kind === 'LIFECYCLE_JOB') expect(state).toBe('COMPLETED');
          if (kind === 'CRON_JOB' && lastRun?.status === 'FAILED') expect(state).toBe('ERROR');
          if (kind === 'CRON_JOB' && lastRun?.status === 'RUNNING') expect(state).toBe('RUNNING');
        },
      ),
    );
  });

  it('a workload not observed yet is UNKNOWN, with the reason when the runtime could not be asked', () => {
    for (const status of RELEASE_STATUSES.filter((s) => s === 'DEPLOYED')) {
      expect(serviceStatus({ kind: 'CONTAINER', releaseStatus: status, instances: undefined })).toEqual({
        state: 'UNKNOWN',
        message: 'not observed yet',
      });
      expect(
        serviceStatus({ kind: 'CONTAINER', releaseStatus: status, instances: undefined, unobservable: 'kubectl: no' }),
      ).toEqual({ state: 'UNKNOWN', message: 'kubectl: no' });
    }
  });

  it("says why a service is in ERROR: how many are ready, restarts, and the last exit's code and reason", () => {
    const killed = serviceStatus({
      kind: 'CONTAINER',
      releaseStatus: 'DEPLOYED',
      instances: [
        {
          name: 'web-pod-0',
          state: 'exited',
          ready: false,
          restarts: 2,
          lastExit: { code: 137, reason: exitReason(137) },
        },
      ],
    });
    expect(killed).toEqual({
      state: 'ERROR',
      message: '0 of 1 instance ready, 2 restarts; exited with code 137 (killed (SIGKILL))',
    });
    expect(serviceStatus({ kind: 'CONTAINER', releaseStatus: 'DEPLOYED', instances: [] }).message).toBe(
      'no instance is running',
    );
  });
});

describe('exit reasons and runtime answers', () => {
  it('names the signal behind an exit code over 128, prefers the runtime and OOM', () => {
    expect(exitReason(137)).toBe('killed (SIGKILL)');
    expect(exitReason(143)).toBe('terminated (SIGTERM)');
    expect(exitReason(3)).toBe('error');
    expect(exitReason(0)).toBe('completed');
    expect(exitReason(1, 'Error')).toBe('Error');
    expect(exitReason(137, 'Error', true)).toBe('OOMKilled');
  });

  it('reads podman inspect: running is ready; an exited container keeps its exit code; a restart its death', () => {
    expect(
      instanceFromPodman('p', {
        State: {
          Status: 'exited',
          ExitCode: 137,
          StartedAt: '2026-12-04T10:00:00Z',
          FinishedAt: '2026-12-04T10:01:00Z',
        },
        RestartCount: 0,
      }),
    ).toEqual({
      name: 'p',
      state: 'exited',
      ready: false,
      restarts: 0,
      startedAt: new Date('2026-12-04T10:00:00Z'),
      lastExit: { code: 137, reason: 'killed (SIGKILL)' },
    });
    const restarted = instanceFromPodman(
      'p',
      {
        State: {
          Status: 'running',
          ExitCode: 0,
          StartedAt: '2026-12-04T10:00:00Z',
          FinishedAt: '0001-01-01T00:00:00Z',
        },
        RestartCount: 1,
      },
      { code: 3 },
    );
    expect(restarted).toMatchObject({ ready: true, restarts: 1, lastExit: { code: 3, reason: 'error' } });
    // A death of an earlier container of the same name is not this one's when it never restarted.
    expect(
      instanceFromPodman(
        'p',
        { State: { Status: 'running', StartedAt: '2026-12-04T10:00:00Z' }, RestartCount: 0 },
        { code: 3 },
      ).lastExit,
    ).toBeUndefined();
  });

  it('reads kubectl pods: waiting reasons, readiness of every container, restarts, the last termination', () => {
    const pod = instanceFromKubePod({
      metadata: { name: 'web-abc' },
      status: {
        phase: 'Running',
        startTime: '2026-12-04T10:00:00Z',
        containerStatuses: [
          {
            ready: false,
            restartCount: 4,
            state: { waiting: { reason: 'CrashLoopBackOff' } },
            lastState: { terminated: { exitCode: 1, reason: 'Error' } },
          },
        ],
      },
    });
    expect(pod).toEqual({
      name: 'web-abc',
      state: 'waiting: CrashLoopBackOff',
      ready: false,
      restarts: 4,
      startedAt: new Date('2026-12-04T10:00:00Z'),
      lastExit: { code: 1, reason: 'Error' },
    });
    const grouped = kubePodsByRelease(
      JSON.stringify({
        items: [
          { metadata: { name: 'a', labels: { 'app.kubernetes.io/instance': 'web-1' } }, status: { phase: 'Running' } },
          {
            metadata: { name: 'b', labels: { 'app.kubernetes.io/instance': 'job-1' } },
            status: { phase: 'Succeeded' },
          },
          { metadata: { name: 'c' }, status: { phase: 'Running' } },
        ],
      }),
    );
    expect([...grouped.keys()]).toEqual(['web-1']);
  });

  it('splits timestamped log lines (podman, kubectl --prefix)', () => {
    expect(parseTimestamped('2026-12-04T16:52:40.841153920Z hello world')).toEqual({
      timestamp: new Date('2026-12-04T16:52:40.841Z'),
      message: 'hello world',
    });
    expect(parseTimestamped('no time here')).toEqual({ timestamp: undefined, message: 'no time here' });
    expect(parseKubectlPrefixed('[pod/web-7d9/web] 2026-12-04T16:52:40.000000001Z serving')).toEqual({
      instance: 'web-7d9',
      timestamp: new Date('2026-12-04T16:52:40.000Z'),
      message: 'serving',
    });
  });
});
