// The running-status columns of `status` and the options of `logs --service` (pure parts).
import { deploy } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { instancesSummary, parseSince, runtimeStateName } from '../src/commands/runtime.ts';

const service = (r: Partial<deploy.ServiceRuntime>) => deploy.ServiceRuntime.fromPartial({ kind: 'CONTAINER', ...r });

describe('stageline status: RUNNING and INSTANCES', () => {
  it('counts ready instances and restarts, and names the last exit of one that is not ready', () => {
    expect(runtimeStateName(deploy.RuntimeState.RUNTIME_STATE_WARNING)).toBe('WARNING');
    expect(instancesSummary(service({ instances: [{ name: 'a', ready: true, restarts: 0 }] as never }))).toBe(
      '1/1 ready',
    );
    expect(
      instancesSummary(
        service({
          instances: [
            { name: 'a', state: 'running', ready: true, restarts: 1 },
            {
              name: 'b',
              state: 'exited',
              ready: false,
              restarts: 2,
              hasLastExit: true,
              lastExitCode: 137,
              lastExitReason: 'killed (SIGKILL)',
            },
          ] as never,
        }),
      ),
    ).toBe('1/2 ready, 3 restarts, exit 137 (killed (SIGKILL))');
    expect(
      instancesSummary(
        service({
          kind: 'LIFECYCLE_JOB',
          instances: [{ name: 'migrate-r3', state: 'completed', hasLastExit: true, lastExitCode: 0 }] as never,
        }),
      ),
    ).toBe('migrate-r3 completed, exit 0');
    expect(instancesSummary(service({ instances: [] }))).toBe('');
  });
});

describe('stageline logs --since', () => {
  const now = new Date('2026-12-04T12:00:00Z');
  it('takes a duration ago or a date, and refuses anything else', () => {
    expect(parseSince('30s', now)).toEqual(new Date('2026-12-04T11:59:30Z'));
    expect(parseSince('10m', now)).toEqual(new Date('2026-12-04T11:50:00Z'));
    expect(parseSince('2h', now)).toEqual(new Date('2026-12-04T10:00:00Z'));
    expect(parseSince('1d', now)).toEqual(new Date('2026-12-03T12:00:00Z'));
    expect(parseSince('2026-12-01T00:00:00Z', now)).toEqual(new Date('2026-12-01T00:00:00Z'));
    expect(() => parseSince('yesterday', now)).toThrow('--since must be a duration (30s, 10m, 2h, 1d) or a date');
  });
});
