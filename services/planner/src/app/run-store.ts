// The one port between the planner's handlers and where runs are kept: every read and write the app
// does, in plain values (never database rows or sessions). The PostgreSQL implementation is
// adapters/db/run-store.ts; how it retries and what a transaction is are its business.
import type { RunOptions, RunState } from '../domain/model.ts';
import type { ServiceStanding } from '../domain/outcomes.ts';

/** A run as the planner works on it. */
export interface RunRecord {
  id: string;
  environmentId: string;
  action: string;
  status: string;
  requester: string;
  serviceIds: string[];
  version: string;
  forceBuild: boolean;
  toDeploymentId?: string | null | undefined;
  options: RunOptions;
  state: RunState | null | undefined;
  /**
   * The environment snapshot the run works from (proto JSON, secrets sealed). While QUEUED: the
   * environment as the latest request that joined the run saw it (environment, pipeline, services);
   * once started: the environment and the service definitions it deploys. Null on a queued run
   * written by an older version (it fetches the environment when it starts).
   */
  snapshot: unknown;
  message: string;
  /** The sequence of the run's latest event (DeploymentEvent.sequence). */
  eventSequence: number;
  createdAt: Date;
  startedAt?: Date | null | undefined;
  finishedAt?: Date | null | undefined;
}

/** A run without its snapshot: what queue decisions, views and events need. */
export type RunHead = Omit<RunRecord, 'snapshot'>;

/** What the planner keeps of a service between runs (domain/outcomes.ts ServiceStanding), keyed. */
export interface ServiceStatus extends ServiceStanding {
  serviceId: string;
  environmentId: string;
}

/** A message to publish once the transaction commits (the outbox). */
export interface OutboxEntry {
  id?: string;
  subject: string;
  payload: Uint8Array;
  headers?: Record<string, string>;
}

/** Reads, inside a lane transaction or on their own. */
export interface RunReads {
  run(id: string): Promise<RunRecord | undefined>;
  /** The run a request id made (or joined). */
  runOfRequest(requestId: string): Promise<string | undefined>;
  /** The environment a run belongs to (it never changes). */
  environmentOf(id: string): Promise<string | undefined>;
  /** The environment's queued, running and canceling runs, in request order. */
  openRuns(environmentId: string): Promise<RunHead[]>;
  runState(id: string): Promise<RunState | null>;
  /** The states of the environment's last `limit` finished runs, newest first. */
  recentStates(environmentId: string, limit: number): Promise<RunState[]>;
  /** The run that resumed `runId`, if any. */
  resumedBy(environmentId: string, runId: string): Promise<string | undefined>;
  serviceStatuses(environmentId: string): Promise<ServiceStatus[]>;
  laneDeleted(environmentId: string): Promise<boolean>;
  /** A page of the environment's runs, newest first, older than `before` when given. */
  runs(environmentId: string, page: { before?: string | undefined; limit: number }): Promise<RunHead[]>;
}

/** One lane transaction: the environment's runs change only here, one writer at a time. */
export interface LaneTx extends RunReads {
  /** Writes the whole run (inserted when new). */
  saveRun(run: RunRecord): Promise<void>;
  /**
   * Writes what a job report can change: the run's status, message, event sequence and times, and its
   * state — `changed` names the services that changed since the run was read (the adapter may write
   * only those); 'all' when unknown. Never the snapshot.
   */
  writeProgress(run: RunHead, changed: ReadonlySet<string> | 'all'): Promise<void>;
  /** Writes the event sequences of runs that only sent an event. */
  writeSequences(runs: readonly Pick<RunHead, 'id' | 'eventSequence'>[]): Promise<void>;
  addRequestKey(requestId: string, deploymentId: string): Promise<void>;
  /** Inserts or replaces these services' statuses. */
  saveServiceStatuses(statuses: readonly ServiceStatus[], at: Date): Promise<void>;
  /** The environment is gone: nothing more runs in it. */
  markDeleted(environmentId: string): Promise<void>;
  /** Published after the commit. */
  enqueue(entry: OutboxEntry): void;
  /**
   * Reads these runs and these environments' service statuses in one statement each, for the reads
   * of them that follow (a batch of several runs' job reports).
   */
  prefetch(runIds: readonly string[], environmentIds: readonly string[]): Promise<void>;
  /**
   * Runs `fn` so that when it throws, what it wrote and enqueued is undone and the rest of the
   * transaction goes on (a savepoint): the error is returned instead.
   */
  apart<T>(fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }>;
}

/** A job as the outbox last published it (lost-job recovery). */
export interface PublishedJob {
  subject: string;
  payload: Uint8Array;
  headers: Record<string, string> | null;
  publishedAt: number | null;
}

/** Lost-job recovery's transaction (held by one planner process at a time). */
export interface RecoveryTx {
  /** Running and canceling runs, with their states. */
  activeRuns(): Promise<Array<{ id: string; state: RunState | null }>>;
  /** Outbox rows with one of `subjects`, or under one of `prefixes`, in publish order. */
  publishedJobs(subjects: readonly string[], prefixes: readonly string[]): Promise<PublishedJob[]>;
  enqueue(entry: OutboxEntry): void;
}

export interface RunStore {
  /** Reads on their own (retried as a whole when the connection fails). */
  read<T>(what: string, fn: (reads: RunReads) => Promise<T>): Promise<T>;
  /**
   * One transaction holding the environment's lane (`deleted`: whether the environment is deleted).
   * May run `fn` again on a lost connection: it must look before it writes.
   */
  inLane<T>(environmentId: string, fn: (tx: LaneTx, deleted: boolean) => Promise<T>): Promise<T>;
  /**
   * One transaction holding several environments' lanes (taken in id order; `deleted`: whether each is
   * deleted): a batch of several runs' job reports decided together. As `inLane`, may run `fn` again.
   */
  inLanes<T>(
    environmentIds: readonly string[],
    fn: (tx: LaneTx, deleted: ReadonlyMap<string, boolean>) => Promise<T>,
  ): Promise<T>;
  /** Running and canceling runs of every environment. */
  activeRuns(): Promise<RunRecord[]>;
  /** Environments with queued runs, and how many wait in each. */
  queueDepths(): Promise<Array<{ environmentId: string; queued: number }>>;
  /** Lost-job recovery's transaction, one planner at a time. */
  inRecovery<T>(fn: (tx: RecoveryTx) => Promise<T>): Promise<T>;
}
