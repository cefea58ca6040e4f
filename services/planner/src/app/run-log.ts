// Runs as operators follow them: one info line per run start, stage change and run end (with the run,
// environment and service ids), and the run metrics (stageline_runs_total, _run_duration_seconds).
// Transitions are noted inside a transaction and told once it has committed; a transaction retried
// notes the same transition again, which is told once.
import type { Logger } from '@stageline/log';
import { metrics } from '@stageline/telemetry';
import type { ActionName } from '../domain/model.ts';
import type { RunTransition } from '../domain/transitions.ts';

export interface RunIds {
  id: string;
  environmentId: string;
  action: ActionName;
  serviceIds: readonly string[];
}

const keyOf = (run: RunIds, t: RunTransition) =>
  `${run.id}|${t.kind}|${t.kind === 'stage' ? `${t.stageId}|${t.status}` : t.kind === 'finished' ? t.status : ''}`;

export class RunLog {
  readonly #log: Logger;
  readonly #pending = new Map<string, { run: RunIds; transition: RunTransition }>();

  constructor(log: Logger) {
    this.#log = log.child({ component: 'runs' });
  }

  /** Notes what changed in a run (inside its transaction). */
  note(run: RunIds, transitions: readonly RunTransition[]): void {
    for (const transition of transitions) this.#pending.set(keyOf(run, transition), { run, transition });
  }

  /** Tells what was noted (after the commit). */
  tell(): void {
    for (const { run, transition } of this.#pending.values()) {
      const ids = { deploymentId: run.id, environmentId: run.environmentId, action: run.action };
      switch (transition.kind) {
        case 'started':
          this.#log.info({ ...ids, serviceIds: run.serviceIds }, `run started: ${run.action}`);
          break;
        case 'stage':
          this.#log.info(
            { ...ids, stageId: transition.stageId, stage: transition.name, status: transition.status },
            `stage ${transition.order} "${transition.name}" ${transition.status}`,
          );
          break;
        case 'finished':
          this.#log.info(
            { ...ids, serviceIds: run.serviceIds, status: transition.status, seconds: transition.seconds },
            `run finished: ${run.action} ${transition.status}`,
          );
          metrics.runs.inc({ action: run.action, outcome: transition.status });
          if (transition.seconds !== null) metrics.runDuration.observe({ action: run.action }, transition.seconds);
          break;
      }
    }
    this.#pending.clear();
  }
}
