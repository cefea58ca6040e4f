// A worker sends a job's reports coalesced (JobEvent.earlier: a 0 ms job's step start, step end and
// result in one message). The planner's results consumer decodes a message into the same ordered list
// of events; applied in order they advance the job as separate messages would, and a stale delivery's
// coalesced reports (numbered from a lower stride) change nothing.
import { coalesceJobEvents, decodeJobEvents } from '@stageline/bus';
import { bus as busv1, control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { toFact } from '../src/app/job-facts.ts';
import type { EnvironmentFacts, RunState } from '../src/domain/model.ts';
import { planRun } from '../src/domain/plan.ts';
import { advance, applyJobFact } from '../src/domain/schedule.ts';

const env: EnvironmentFacts = {
  environmentId: 'env',
  stages: [{ id: 'st0', name: 'stage 0' }],
  services: [
    {
      id: 'sv0',
      name: 'web',
      kind: 'CONTAINER',
      stageId: 'st0',
      skipped: false,
      build: 'MIRROR',
      configuredVersion: 'v1',
      current: { hasResources: false, stopped: false, version: 'v0', image: 'img:v0' },
    },
  ],
  maxParallelBuilds: 1,
  maxParallelDeploys: 1,
  mode: 'PIPELINED',
};

/** The three reports of one delivery of a 0 ms mirror job, as the worker numbers them. */
function delivery(jobId: string, deliveryCount: number, image: string): busv1.JobEvent[] {
  const base = deliveryCount * 1_000_000;
  const kind = control.StepKind.STEP_KIND_MIRROR_IMAGE;
  const at = new Date(1_000);
  const id = { jobId, deploymentId: 'run', serviceId: 'sv0' };
  return [
    busv1.JobEvent.fromPartial({ ...id, sequence: base + 1 }),
    busv1.JobEvent.fromPartial({ ...id, sequence: base + 2 }),
    busv1.JobEvent.fromPartial({ ...id, sequence: base + 3 }),
  ].map(
    (e, i): busv1.JobEvent => ({
      ...e,
      event:
        i === 0
          ? { $case: 'stepStarted', value: busv1.StepStarted.fromPartial({ kind, startedAt: at, message: 'copy' }) }
          : i === 1
            ? {
                $case: 'stepFinished',
                value: busv1.StepFinished.fromPartial({
                  step: { kind, startedAt: at, finishedAt: at, outcome: control.StepOutcome.STEP_OUTCOME_SUCCESS },
                }),
              }
            : { $case: 'jobFinished', value: busv1.JobFinished.fromPartial({ succeeded: true, image }) },
    }),
  );
}

const apply = (state: RunState, message: busv1.JobEvent) =>
  decodeJobEvents(busv1.JobEvent.encode(message).finish())
    .map((e) => toFact(e, 1_000))
    .filter((f) => f !== undefined)
    .reduce(applyJobFact, state);

describe('coalesced job reports in the planner', () => {
  const started = advance(planRun('run', env, { action: 'DEPLOY', serviceIds: [], version: '', forceBuild: false }), 0);
  const jobId = started.state.services[0]?.build?.jobId ?? '';

  it('one message of three reports advances the job as three messages would', () => {
    expect(jobId).not.toBe('');
    const events = delivery(jobId, 1, 'mirror/web@sha256:1');
    const one = apply(started.state, coalesceJobEvents(events));
    const three = events.reduce(apply, started.state);
    expect(one).toEqual(three);
    expect(one.services[0]?.build).toMatchObject({ phase: 'DONE', lastSequence: 1_000_003 });
    expect(one.services[0]?.image).toBe('mirror/web@sha256:1');
  });

  it("drops a stale delivery's coalesced reports once the live delivery reported", () => {
    const live = apply(started.state, coalesceJobEvents(delivery(jobId, 2, 'live')));
    // The stale copy (delivery 1, paused past its ack wait) sends its reports after the live one's.
    const stale = delivery(jobId, 1, 'stale');
    expect(apply(live, coalesceJobEvents(stale))).toEqual(live);
    // Its step reports alone too (no result: the fence stopped it), whatever they are coalesced with.
    expect(apply(live, coalesceJobEvents(stale.slice(0, 2)))).toEqual(live);
    // And while the live copy has reported its step start only, a stale result is still dropped.
    const liveStarted = apply(started.state, delivery(jobId, 2, 'live')[0]!);
    expect(apply(liveStarted, coalesceJobEvents(stale))).toEqual(liveStarted);
  });
});
