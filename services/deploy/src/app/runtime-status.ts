// Running status and live logs (stageline.deploy.v1.RuntimeService): the deploy service keeps what runs
// in memory, refreshed by the runtimes' observers (podman events on `local`, a poll of each namespace's
// pods on `kubernetes`); requests read that memory. Logs are read from the runtime on request.

import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition, invalidArgument, notFound } from '@stageline/errors';
import type { Logger } from '@stageline/log';
import { redactor } from '@stageline/secrets';
import { isJobKind, type Release } from '../domain/release.ts';
import { type InstanceFacts, type RuntimeState, serviceStatus } from '../domain/runtime-status.ts';
import type { CronRun, CronTickStore } from './cron-scheduler.ts';

export interface LiveReleases {
  /** The live release (DEPLOYED or STOPPED) of every service, of one environment or of all. */
  live(environmentId?: string): Promise<Release[]>;
  /** The service's newest release, whatever its status. */
  latest(serviceId: string): Promise<Release | undefined>;
}

/** What the runtime said of a release's instances, or why it could not be asked. */
export type Observation = { instances: InstanceFacts[] } | { error: string };

export interface LogOptions {
  follow: boolean;
  since?: Date;
  tailLines: number;
}

export interface ServiceLogLine {
  instance: string;
  timestamp?: Date;
  message: string;
  stream: '' | 'stdout' | 'stderr';
}

/** One runtime's view of what runs (adapters: podman, kubectl). */
export interface RuntimeObserver {
  /** The instances of each release (by release id), read now. */
  observe(releases: readonly Release[]): Promise<Map<string, Observation>>;
  /** Calls onChange whenever something may have changed (podman events); stop() ends it. */
  watch?(onChange: () => void): { stop(): void };
  /** The release's own output: the last lines, then (follow) new ones until signal aborts. */
  logs(
    release: Release,
    options: LogOptions,
    onLine: (line: ServiceLogLine) => void,
    signal: AbortSignal,
  ): Promise<void>;
}

export interface ServiceRuntimeView {
  serviceId: string;
  serviceName: string;
  kind: string;
  state: RuntimeState;
  message: string;
  instances: InstanceFacts[];
  revision: number;
  releaseStatus: string;
  observedAt?: Date;
  runtime: string;
}

export interface RuntimeWatchDeps {
  releases: LiveReleases;
  observers: ReadonlyMap<string, RuntimeObserver>;
  cronRuns?: Pick<CronTickStore, 'list'>;
  /**
   * The secret values a release's chart gives its workload: the service's output shows them as `***`
   * (a viewer reads logs, never secrets). Absent or failing: only URL passwords are masked.
   */
  secretValues?: (release: Release) => Promise<string[]>;
  /** How often every runtime is read again, events or not. */
  pollMs: number;
  log: Logger;
  now?: () => Date;
}

/** Kinds whose instances are read from the runtime (the others are decided from their release). */
const observed = (r: Release) => !isJobKind(r.kind) && r.kind !== 'MANAGED_DATABASE';

const MAX_WAIT_FOR_REFRESH_MS = 15_000;
const DEBOUNCE_MS = 200;
const CRON_FOLLOW_POLL_MS = 2_000;
const REATTACH_MS = 2_000;
export const DEFAULT_TAIL_LINES = 100;
export const MAX_TAIL_LINES = 10_000;

interface Cached {
  releaseId: string;
  observation: Observation;
  at: Date;
}

export class RuntimeWatch {
  readonly #deps: RuntimeWatchDeps;
  readonly #now: () => Date;
  readonly #cache = new Map<string, Cached>();
  #current: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #watches: Array<{ stop(): void }> = [];
  #stopped = false;

  constructor(deps: RuntimeWatchDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? (() => new Date());
  }

  start(): void {
    for (const observer of this.#deps.observers.values()) {
      const w = observer.watch?.(() => this.#soon());
      if (w !== undefined) this.#watches.push(w);
    }
    const tick = () => {
      if (this.#stopped) return;
      void this.refresh().finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#deps.pollMs);
      });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#debounce);
    for (const w of this.#watches) w.stop();
    await Promise.allSettled([this.#current, this.#next]);
  }

  #soon(): void {
    if (this.#stopped || this.#debounce !== undefined) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      void this.refresh();
    }, DEBOUNCE_MS);
  }

  /** A refresh that starts after this call (joined with one already waiting to start). */
  refresh(): Promise<void> {
    if (this.#next !== undefined) return this.#next;
    const next = (async () => {
      await this.#current?.catch(() => undefined);
      this.#next = undefined;
      const current = this.#once();
      this.#current = current;
      try {
        await current;
      } finally {
        if (this.#current === current) this.#current = undefined;
      }
    })();
    this.#next = next;
    return next;
  }

  async #once(): Promise<void> {
    const at = this.#now();
    let releases: Release[];
    try {
      releases = (await this.#deps.releases.live()).filter(observed);
    } catch (err) {
      this.#deps.log.warn({ err }, 'runtime status: reading live releases failed');
      return;
    }
    const byRuntime = new Map<string, Release[]>();
    for (const r of releases) byRuntime.set(r.runtime, [...(byRuntime.get(r.runtime) ?? []), r]);
    const seen = new Set<string>();
    for (const [runtime, list] of byRuntime) {
      const observer = this.#deps.observers.get(runtime);
      let observations: Map<string, Observation>;
      if (observer === undefined) {
        observations = new Map(list.map((r) => [r.id, { error: `runtime ${runtime} is not watched` }]));
      } else {
        try {
          observations = await observer.observe(list);
        } catch (err) {
          const error = err instanceof Error ? err.message : String(err);
          this.#deps.log.warn({ err, runtime }, 'runtime status: observing failed');
          observations = new Map(list.map((r) => [r.id, { error }]));
        }
      }
      for (const r of list) {
        seen.add(r.serviceId);
        this.#cache.set(r.serviceId, {
          releaseId: r.id,
          observation: observations.get(r.id) ?? { instances: [] },
          at,
        });
      }
    }
    for (const id of [...this.#cache.keys()]) if (!seen.has(id)) this.#cache.delete(id);
  }

  /** Every service of the environment with a live release, by name. */
  async status(environmentId: string): Promise<ServiceRuntimeView[]> {
    if (environmentId.trim() === '') throw invalidArgument('environment_id', 'required');
    let releases = await this.#deps.releases.live(environmentId);
    const stale = (r: Release) => {
      const c = this.#cache.get(r.serviceId);
      return observed(r) && (c === undefined || c.releaseId !== r.id || c.at.getTime() < r.updatedAt.getTime());
    };
    if (releases.some(stale)) {
      // Changed since the last look (a deploy, a stop): wait for the next one rather than answer old news.
      const waited = new AbortController();
      await Promise.race([
        this.refresh(),
        sleep(MAX_WAIT_FOR_REFRESH_MS, undefined, { signal: waited.signal }).catch(() => undefined),
      ]);
      waited.abort();
      releases = await this.#deps.releases.live(environmentId);
    }
    const views = await Promise.all(releases.map((r) => this.#view(r)));
    return views.sort((a, b) => a.serviceName.localeCompare(b.serviceName));
  }

  async #view(r: Release): Promise<ServiceRuntimeView> {
    const base = {
      serviceId: r.serviceId,
      serviceName: r.serviceName,
      kind: r.kind,
      revision: r.revision,
      releaseStatus: r.status,
      runtime: r.runtime,
    };
    if (r.kind === 'CRON_JOB' && r.runtime !== 'local' && r.status !== 'STOPPED') {
      // The cluster's CronJob runs it: its runs are the cluster's (logs: its pods, by instance label).
      return {
        ...base,
        state: 'COMPLETED',
        message: 'a CronJob on the cluster: its runs are not watched here',
        instances: [],
      };
    }
    if (r.kind === 'CRON_JOB') {
      const [last] = (await this.#deps.cronRuns?.list(r.serviceId, 1)) ?? [];
      const decided = serviceStatus({
        kind: r.kind,
        releaseStatus: r.status,
        instances: [],
        ...(last !== undefined ? { lastRun: last } : {}),
      });
      return { ...base, ...decided, instances: last !== undefined ? [cronInstance(r, last)] : [] };
    }
    if (!observed(r)) {
      const decided = serviceStatus({ kind: r.kind, releaseStatus: r.status, instances: [] });
      const instances: InstanceFacts[] =
        r.kind === 'LIFECYCLE_JOB'
          ? [
              {
                name: `${r.serviceName}-r${r.revision}`,
                state: 'completed',
                ready: false,
                restarts: 0,
                startedAt: r.createdAt,
                lastExit: { code: 0, reason: 'completed' },
              },
            ]
          : [];
      return { ...base, ...decided, instances };
    }
    const cached = this.#cache.get(r.serviceId);
    const observation = cached?.releaseId === r.id ? cached.observation : undefined;
    const instances = observation !== undefined && 'instances' in observation ? observation.instances : undefined;
    const decided = serviceStatus({
      kind: r.kind,
      releaseStatus: r.status,
      instances,
      now: this.#now(),
      ...(observation !== undefined && 'error' in observation ? { unobservable: observation.error } : {}),
    });
    return {
      ...base,
      ...decided,
      instances: instances ?? [],
      ...(cached !== undefined ? { observedAt: cached.at } : {}),
    };
  }

  /**
   * The service's own output (see RuntimeService/StreamServiceLogs). Lines go to onLine in order; resolves
   * when everything asked for was sent (follow: when signal aborts).
   */
  async logs(
    request: { environmentId: string; serviceId: string; follow: boolean; since?: Date; tailLines: number },
    onLineInClear: (line: ServiceLogLine) => void,
    signal: AbortSignal,
  ): Promise<void> {
    if (request.environmentId.trim() === '') throw invalidArgument('environment_id', 'required');
    if (request.serviceId.trim() === '') throw invalidArgument('service_id', 'required');
    if (request.tailLines > MAX_TAIL_LINES) throw invalidArgument('tail_lines', `must be at most ${MAX_TAIL_LINES}`);
    const options: LogOptions = {
      follow: request.follow,
      tailLines: request.tailLines === 0 ? DEFAULT_TAIL_LINES : request.tailLines,
      ...(request.since !== undefined ? { since: request.since } : {}),
    };
    const latest = await this.#deps.releases.latest(request.serviceId);
    if (latest === undefined) throw failedPrecondition('the service has never been deployed: it runs nothing');
    if (latest.environmentId !== request.environmentId) throw notFound('service', request.serviceId, 'service_id');
    const [release] = (await this.#deps.releases.live(request.environmentId)).filter(
      (r) => r.serviceId === request.serviceId,
    );
    if (release === undefined) {
      throw failedPrecondition(`service ${latest.serviceName} runs nothing (its latest release is ${latest.status})`);
    }
    const redact = redactor((await this.#deps.secretValues?.(release).catch(() => [])) ?? []);
    const onLine = (line: ServiceLogLine) => onLineInClear({ ...line, message: redact(line.message) });
    if (release.kind === 'CRON_JOB' && release.runtime === 'local') {
      await this.#cronLogs(release, options, onLine, signal);
      return;
    }
    if (release.kind === 'LIFECYCLE_JOB' && release.runtime === 'local') {
      throw failedPrecondition(
        `${release.serviceName} is a lifecycle job: its output is in the logs of the run that ran it (${release.deploymentId})`,
      );
    }
    if (release.kind === 'MANAGED_DATABASE') {
      throw failedPrecondition(`${release.serviceName} is a database on a server Stageline does not run: no output`);
    }
    const observer = this.#deps.observers.get(release.runtime);
    if (observer === undefined) throw failedPrecondition(`runtime ${release.runtime} has no logs here`);
    if (!options.follow) {
      await observer.logs(release, options, onLine, signal);
      return;
    }
    // Following outlives a container: when its log ends (it stopped, a deploy replaced it), the live
    // release's is read again from the last line's time on.
    let last: Date | undefined;
    let current = release;
    let now = options;
    const track = (line: ServiceLogLine) => {
      if (line.timestamp !== undefined && (last === undefined || line.timestamp > last)) last = line.timestamp;
      onLine(line);
    };
    for (;;) {
      await observer.logs(current, now, track, signal);
      await sleep(REATTACH_MS, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      const [again] = (await this.#deps.releases.live(request.environmentId)).filter(
        (r) => r.serviceId === request.serviceId,
      );
      // Deleted meanwhile: nothing more will come.
      if (again === undefined) return;
      current = again;
      now = {
        follow: true,
        tailLines: MAX_TAIL_LINES,
        since: last === undefined ? (options.since ?? this.#now()) : new Date(last.getTime() + 1),
      };
    }
  }

  async #cronLogs(
    release: Release,
    options: LogOptions,
    onLine: (line: ServiceLogLine) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const list = this.#deps.cronRuns;
    if (list === undefined) return;
    const sent = new Set<string>();
    const finishedRuns = async () =>
      (await list.list(release.serviceId, 500))
        .filter((run) => run.finishedAt !== undefined && !sent.has(run.id))
        .filter((run) => options.since === undefined || run.startedAt.getTime() >= options.since.getTime())
        .reverse();
    // The run's own output, without the scheduler's lines about it ("running …", "completed (exit 0)").
    const prefix = `${release.serviceName} | `;
    const linesOf = (run: CronRun): ServiceLogLine[] =>
      run.log
        .filter((message) => message.startsWith(prefix))
        .map((message) => ({
          instance: cronInstanceName(release, run),
          timestamp: run.startedAt,
          message: message.slice(prefix.length),
          stream: '',
        }));
    const first = await finishedRuns();
    for (const line of first.flatMap(linesOf).slice(-options.tailLines)) onLine(line);
    for (const run of first) sent.add(run.id);
    while (options.follow && !signal.aborted) {
      await sleep(CRON_FOLLOW_POLL_MS, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      for (const run of await finishedRuns()) {
        sent.add(run.id);
        for (const line of linesOf(run)) onLine(line);
      }
    }
  }
}

function cronInstanceName(release: Release, run: CronRun): string {
  return `${release.serviceName}-${run.tick.toISOString().slice(0, 16).replace(/[-:]/g, '').replace('T', '-')}`;
}

function cronInstance(release: Release, run: CronRun): InstanceFacts {
  return {
    name: cronInstanceName(release, run),
    state: run.status === 'RUNNING' ? 'running' : 'completed',
    ready: run.status === 'RUNNING',
    restarts: 0,
    startedAt: run.startedAt,
    ...(run.status !== 'RUNNING'
      ? { lastExit: { code: run.exitCode, reason: run.status === 'SUCCEEDED' ? 'completed' : 'error' } }
      : {}),
  };
}
