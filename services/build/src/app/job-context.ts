// The worker framework's per-job port, as issue 3 specifies it for @stageline/bus's startWorker. Declared
// here until the bus exports it; the shapes are identical, so the handler plugs into startWorker as is.
import type { Logger } from '@stageline/log';
import type { control } from '@stageline/proto';

export interface JobContext {
  readonly jobId: string;
  readonly deploymentId: string;
  readonly serviceId: string;
  readonly attempt: number;
  /** Aborted when the run is canceled or the worker stops. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** One line of the service's run log. */
  output(message: string, step?: control.StepKind): void;
  stepStarted(kind: control.StepKind, message?: string): Promise<void>;
  stepFinished(step: control.Step): Promise<void>;
  /** Heartbeat for long jobs. */
  working(): void;
}
