// The planner's entry points, a thin facade over its handlers: requests (app/requests.ts), job results
// (app/results.ts), the queue (app/queue-runs.ts) and reads (app/reads.ts), all over one RunStore
// (app/run-store.ts). Every change to an environment's runs happens in one lane transaction: load
// facts, let the pure core decide, write the run, its jobs and its events (outbox) together. Re-running
// on the same facts decides nothing new.
import type { bus, control } from '@stageline/proto';
import { pgRunStore } from '../adapters/db/run-store.ts';
import type { RunOptions } from '../domain/model.ts';
import type { Ctx, PlannerAppDeps } from './context.ts';
import type { DeadlineLimits } from './deadlines.ts';
import { kick, kickAll } from './queue-runs.ts';
import { getDeployment, getRun, listDeployments, plan } from './reads.ts';
import { cancel, submit } from './requests.ts';
import { expireOverdueJobs, onJobEvents } from './results.ts';
import { RunLog } from './run-log.ts';
import type { RunStore } from './run-store.ts';

export type { PlannerAppDeps } from './context.ts';

export class PlannerApp {
  readonly #ctx: Ctx;

  /** `store`: where runs are kept (default: the PostgreSQL store on `deps.db`). */
  constructor(deps: PlannerAppDeps, store: RunStore = pgRunStore(deps.db)) {
    this.#ctx = {
      deps,
      store,
      now: deps.now ?? Date.now,
      runLog: new RunLog(deps.log),
      environments: new Map(),
    };
  }

  /** One request becomes exactly one run (or joins a queued one); the same request_id twice is one run. */
  submit(request: bus.ActionRequested, resuming?: RunOptions): Promise<control.Deployment> {
    return submit(this.#ctx, request, resuming);
  }

  cancel(deploymentId: string): Promise<control.Deployment> {
    return cancel(this.#ctx, deploymentId);
  }

  /** Events of one run, in stream order, applied in one transaction (app/results.ts). */
  onJobEvents(events: readonly bus.JobEvent[]): Promise<void> {
    return onJobEvents(this.#ctx, events);
  }

  /** Fails every job past its deadline (app/deadlines.ts); returns how many. */
  expireOverdueJobs(limits?: DeadlineLimits): Promise<number> {
    return expireOverdueJobs(this.#ctx, limits);
  }

  /** Starts the environment's next queued run if none is running. Safe to call any time. */
  kick(environmentId: string): Promise<void> {
    return kick(this.#ctx, environmentId);
  }

  /** Every environment with queued work: at start and by the sweep, so a crash between two runs loses nothing. */
  kickAll(): Promise<void> {
    return kickAll(this.#ctx);
  }

  getDeployment(deploymentId: string): Promise<control.Deployment> {
    return getDeployment(this.#ctx, deploymentId);
  }

  /** A whole run, and the sequence of its latest event that it includes. */
  getRun(deploymentId: string): Promise<{ deployment: control.Deployment; eventSequence: number }> {
    return getRun(this.#ctx, deploymentId);
  }

  listDeployments(req: {
    environmentId: string;
    pageSize: number;
    pageToken: string;
  }): Promise<{ deployments: control.Deployment[]; nextPageToken: string }> {
    return listDeployments(this.#ctx, req);
  }

  /** The dry run: what would mirror, build, deploy, be skipped. Nothing is stored or sent. */
  plan(request: bus.ActionRequested): Promise<control.Deployment> {
    return plan(this.#ctx, request);
  }
}
