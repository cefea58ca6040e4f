import type { bus } from '@stageline/proto';
import type { JobFact } from '../domain/schedule.ts';
import { serviceStateName, stepKindName, stepOutcomeName } from './wire.ts';

/** A job event from the wire as the core takes it (a fact), or undefined when it carries nothing known. */
export function toFact(event: bus.JobEvent, now: number): JobFact | undefined {
  const e = event.event;
  switch (e?.$case) {
    case 'stepStarted': {
      const kind = stepKindName(e.value.kind);
      if (!kind) return undefined;
      return {
        type: 'stepStarted',
        jobId: event.jobId,
        sequence: event.sequence,
        kind,
        at: e.value.startedAt?.getTime() ?? now,
        message: e.value.message,
      };
    }
    case 'stepFinished': {
      const step = e.value.step;
      const kind = step && stepKindName(step.kind);
      if (!step || !kind) return undefined;
      return {
        type: 'stepFinished',
        jobId: event.jobId,
        sequence: event.sequence,
        step: {
          kind,
          startedAt: step.startedAt?.getTime() ?? now,
          finishedAt: step.finishedAt?.getTime() ?? now,
          outcome: stepOutcomeName(step.outcome) ?? 'SUCCESS',
          message: step.message,
        },
      };
    }
    case 'jobFinished':
      return {
        type: 'jobFinished',
        jobId: event.jobId,
        sequence: event.sequence,
        succeeded: e.value.succeeded,
        state: serviceStateName(e.value.state) ?? 'QUEUED',
        message: e.value.message,
        image: e.value.image,
        endpoints: e.value.endpoints.map((x) => ({ port: x.port, url: x.url })),
        outputs: e.value.outputs,
        at: now,
        resolvedVersion: e.value.resolvedVersion,
      };
    case undefined:
      return undefined;
  }
}
