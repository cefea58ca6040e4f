// Cron jobs on the `local` runtime (podman kube play runs no CronJob): the deploy service runs them on
// schedule itself. Every deploy process polls the live schedules; a due tick is claimed with a unique
// (service, tick) row, so it runs exactly once across processes, and since claims and schedules live in
// PostgreSQL, a restart picks up where the fleet was. Runs and their logs are kept per tick
// (ReleaseService/ListCronRuns).
import type { Logger } from '@stageline/log';
import { CRON_STARTING_DEADLINE_SECONDS } from '../domain/chart.ts';
import { CronError, dueTick, parseCron } from '../domain/cron.ts';
import { RolloutCanceled, RolloutError } from '../domain/failures.ts';
import type { Release } from '../domain/release.ts';
import type { ReleaseStore, RuntimeContext } from './ports.ts';

export interface TickClaim {
  serviceId: string;
  environmentId: string;
  tick: Date;
  releaseId: string;
  revision: number;
  owner: string;
}

export interface CronRun {
  id: string;
  serviceId: string;
  environmentId: string;
  tick: Date;
  releaseId: string;
  revision: number;
  status: 'RUNNING' | 'SUCCEEDED' | 'FAILED';
  exitCode: number;
  message: string;
  log: string[];
  owner: string;
  startedAt: Date;
  finishedAt: Date | undefined;
}

export interface CronTickStore {
  /** The run's id when this caller claimed the tick; undefined when another process already did. */
  claim(claim: TickClaim, now: Date): Promise<string | undefined>;
  heartbeat(id: string, now: Date): Promise<void>;
  finish(
    id: string,
    outcome: { status: 'SUCCEEDED' | 'FAILED'; exitCode: number; message: string; log: string[] },
    now: Date,
  ): Promise<void>;
  /** Runs whose process stopped heartbeating: FAILED (interrupted). Returns how many. */
  failStale(staleBefore: Date, now: Date): Promise<number>;
  /** Newest tick first. */
  list(serviceId: string, limit: number): Promise<CronRun[]>;
}

export interface CronExecutor {
  runJob(release: Release, runName: string, ctx: RuntimeContext): Promise<{ exitCode: number }>;
}

export interface CronSchedulerDeps {
  releases: Pick<ReleaseStore, 'liveCronJobs'>;
  ticks: CronTickStore;
  executor: CronExecutor;
  /** This process, recorded on the runs it claims. */
  owner: string;
  /** The schedule's clock: which tick is due (tests drive it). */
  clock(): Date;
  /** Wall time, for heartbeats and run times. */
  now?(): Date;
  log: Logger;
  pollMs: number;
}

const HEARTBEAT_MS = 10_000;
const STALE_MS = 60_000;
const LOG_LINES_KEPT = 200;

/** `t202611270405`: the tick's minute, UTC, naming the run's pod. */
export function runNameOf(tick: Date): string {
  return `t${tick.toISOString().slice(0, 16).replace(/[-T:]/g, '')}`;
}

export class CronScheduler {
  readonly #deps: CronSchedulerDeps;
  readonly #now: () => Date;
  readonly #stop = new AbortController();
  readonly #inFlight = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  readonly #badSchedules = new Set<string>();

  constructor(deps: CronSchedulerDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? (() => new Date());
  }

  start(): void {
    const loop = (): void => {
      if (this.#stop.signal.aborted) return;
      this.#polling = this.poll()
        .catch((err: unknown) => this.#deps.log.warn({ err }, 'cron poll failed'))
        .finally(() => {
          if (!this.#stop.signal.aborted) this.#timer = setTimeout(loop, this.#deps.pollMs);
        });
    };
    loop();
  }

  /** Stops claiming ticks; runs in progress are stopped (their pods removed) and recorded as interrupted. */
  async stop(): Promise<void> {
    this.#stop.abort();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    await this.#polling;
    await Promise.all(this.#inFlight);
  }

  /** Resolves once the runs this process started so far have finished. */
  async idle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }

  /** One pass: fail runs whose process died, then claim and start every tick due now. */
  async poll(): Promise<void> {
    const { ticks, releases, log } = this.#deps;
    const wall = this.#now();
    const stale = await ticks.failStale(new Date(wall.getTime() - STALE_MS), wall);
    if (stale > 0) log.warn({ stale }, 'cron runs of a stopped deploy process marked interrupted');
    const now = this.#deps.clock();
    for (const release of await releases.liveCronJobs('local')) {
      if (this.#stop.signal.aborted) return;
      let tick: Date | undefined;
      try {
        tick = dueTick(parseCron(release.schedule), now, CRON_STARTING_DEADLINE_SECONDS, release.createdAt);
      } catch (e) {
        if (!(e instanceof CronError)) throw e;
        if (!this.#badSchedules.has(release.id)) log.error({ err: e, serviceId: release.serviceId }, 'bad schedule');
        this.#badSchedules.add(release.id);
        continue;
      }
      if (tick === undefined) continue;
      const id = await ticks.claim(
        {
          serviceId: release.serviceId,
          environmentId: release.environmentId,
          tick,
          releaseId: release.id,
          revision: release.revision,
          owner: this.#deps.owner,
        },
        this.#now(),
      );
      if (id === undefined) continue;
      const run = this.#run(id, release, tick).finally(() => this.#inFlight.delete(run));
      this.#inFlight.add(run);
    }
  }

  async #run(id: string, release: Release, tick: Date): Promise<void> {
    const { ticks, executor, log } = this.#deps;
    const runLog = log.child({ serviceId: release.serviceId, tick: tick.toISOString(), run: id });
    const lines: string[] = [];
    let lastBeat = Date.now();
    const ctx: RuntimeContext = {
      signal: this.#stop.signal,
      output: (line) => {
        lines.push(line);
        if (lines.length > LOG_LINES_KEPT) lines.shift();
        runLog.info({ line }, 'cron run output');
      },
      working: () => {
        if (Date.now() - lastBeat < HEARTBEAT_MS) return;
        lastBeat = Date.now();
        void ticks.heartbeat(id, this.#now()).catch((err: unknown) => runLog.warn({ err }, 'heartbeat failed'));
      },
    };
    runLog.info({ schedule: release.schedule, revision: release.revision }, 'cron tick claimed: running');
    let outcome: { status: 'SUCCEEDED' | 'FAILED'; exitCode: number; message: string };
    try {
      const result = await executor.runJob(release, runNameOf(tick), ctx);
      outcome = { status: 'SUCCEEDED', exitCode: result.exitCode, message: 'completed (exit 0)' };
    } catch (e) {
      const message =
        e instanceof RolloutCanceled
          ? 'interrupted: the deploy service stopped'
          : e instanceof Error
            ? e.message
            : String(e);
      const exitCode = e instanceof RolloutError && e.exitCode !== undefined ? e.exitCode : -1;
      outcome = { status: 'FAILED', exitCode, message };
      if (!(e instanceof RolloutError) && !(e instanceof RolloutCanceled)) runLog.error({ err: e }, 'cron run failed');
    }
    runLog.info(outcome, 'cron run finished');
    try {
      await ticks.finish(id, { ...outcome, log: lines }, this.#now());
    } catch (err) {
      runLog.error({ err }, 'could not record the cron run');
    }
  }
}
