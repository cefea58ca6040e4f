// The `local` runtime's observer for the running status: `podman container inspect` of every live
// release's container, refreshed whenever `podman events` reports a container event; `podman logs
// --timestamps` for the service's output.
import type { Logger } from '@stageline/log';
import type { LogOptions, Observation, RuntimeObserver, ServiceLogLine } from '../../app/runtime-status.ts';
import { localContainerName, localPodName } from '../../domain/names.ts';
import type { Release } from '../../domain/release.ts';
import { instanceFromPodman, type PodmanInspected, parseTimestamped } from '../../domain/runtime-facts.ts';
import type { Podman } from './podman.ts';

const NOISE = /^failed to connect to syslog/;
const OBSERVE_TIMEOUT_MS = 30_000;
/** podman events ended on its own: started again after this, doubling while it keeps ending at once. */
const EVENTS_RESTART_MS = [2_000, 60_000] as const;

export class PodmanRuntimeObserver implements RuntimeObserver {
  readonly #podman: Podman;
  readonly #log: Logger;
  /** The exit code of each container's last death podman's events told us of, by container name. */
  readonly #deaths = new Map<string, number>();
  /** The containers of the releases observed last: only their events call for a new look. */
  #watched = new Set<string>();

  constructor(podman: Podman, log: Logger) {
    this.#podman = podman;
    this.#log = log;
  }

  async observe(releases: readonly Release[]): Promise<Map<string, Observation>> {
    const result = new Map<string, Observation>();
    if (releases.length === 0) return result;
    const names = releases.map((r) => localContainerName(r.environmentId, r.serviceName));
    this.#watched = new Set(names);
    for (const name of this.#deaths.keys()) if (!this.#watched.has(name)) this.#deaths.delete(name);
    // Several at once; a missing one makes podman exit 125 but the others are still printed.
    const answer = await this.#podman.raw(['container', 'inspect', '--format', 'json', ...names], {
      // A wedged podman must not hold every later look (they wait for this one).
      signal: AbortSignal.timeout(OBSERVE_TIMEOUT_MS),
    });
    let found: PodmanInspected[] = [];
    if (answer.stdout.trim().startsWith('[')) {
      try {
        found = JSON.parse(answer.stdout) as PodmanInspected[];
      } catch {
        found = [];
      }
    } else if (answer.exitCode !== 0 && !/no such (container|object)/i.test(answer.stderr)) {
      const error = `podman container inspect failed: ${answer.stderr
        .split('\n')
        .filter((l) => l.trim() !== '' && !NOISE.test(l))
        .slice(-2)
        .join(' | ')}`;
      return new Map(releases.map((r) => [r.id, { error }]));
    }
    const byName = new Map(found.map((c) => [(c.Name ?? '').replace(/^\//, ''), c]));
    for (const r of releases) {
      const name = localContainerName(r.environmentId, r.serviceName);
      const c = byName.get(name);
      if (c === undefined) {
        result.set(r.id, { instances: [] });
        continue;
      }
      let death = this.#deaths.get(name);
      if (death === undefined && (c.RestartCount ?? 0) > 0 && c.State?.Status === 'running') {
        // Restarted before this process watched: the code is only in podman's event log.
        const since = Date.now() / 1000 - 24 * 3600;
        const id = (c as { Id?: string }).Id ?? name;
        death = await this.#podman.lastExitCode(id, since).catch(() => undefined);
        if (death !== undefined) this.#deaths.set(name, death);
      }
      result.set(r.id, {
        instances: [
          instanceFromPodman(
            localPodName(r.environmentId, r.serviceName),
            c,
            death !== undefined ? { code: death } : undefined,
          ),
        ],
      });
    }
    return result;
  }

  watch(onChange: () => void): { stop(): void } {
    const stop = new AbortController();
    const follow = async () => {
      let pause: number = EVENTS_RESTART_MS[0];
      while (!stop.signal.aborted) {
        const started = Date.now();
        await this.#podman
          .raw(
            // What changes a status: a container starting, dying (its exit code), going away.
            ['events', '--format', 'json', '--filter', 'type=container'].concat([
              '--filter',
              'event=start',
              '--filter',
              'event=died',
              '--filter',
              'event=remove',
            ]),
            { signal: stop.signal, stream: true, onLine: (line, stream) => this.#event(line, stream, onChange) },
          )
          .catch((err: unknown) => {
            if (!stop.signal.aborted) this.#log.debug({ err }, 'podman events ended');
          });
        if (stop.signal.aborted) return;
        // Ended on its own (podman restarted, a store hiccup, no event log): again, after a pause that
        // grows while it keeps ending at once. The poll goes on meanwhile.
        pause =
          Date.now() - started > EVENTS_RESTART_MS[1]
            ? EVENTS_RESTART_MS[0]
            : Math.min(pause * 2, EVENTS_RESTART_MS[1]);
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    };
    void follow();
    return { stop: () => stop.abort() };
  }

  #event(line: string, stream: 'stdout' | 'stderr', onChange: () => void): void {
    if (stream !== 'stdout' || !line.startsWith('{')) return;
    let event: { Name?: string; Status?: string; ContainerExitCode?: number };
    try {
      event = JSON.parse(line) as typeof event;
    } catch {
      return;
    }
    // Other containers of the host are none of ours. A new release's container, not watched yet, is
    // looked at when its release is asked for (its exit code then comes from inspect or the event log).
    if (event.Name === undefined || !this.#watched.has(event.Name)) return;
    if (event.Status === 'died' && typeof event.ContainerExitCode === 'number') {
      this.#deaths.set(event.Name, event.ContainerExitCode);
    }
    if (event.Status === 'remove') this.#deaths.delete(event.Name);
    onChange();
  }

  async logs(
    release: Release,
    options: LogOptions,
    onLine: (line: ServiceLogLine) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const container = localContainerName(release.environmentId, release.serviceName);
    const instance = localPodName(release.environmentId, release.serviceName);
    const argv = [
      'logs',
      '--timestamps',
      '--tail',
      String(options.tailLines),
      ...(options.since !== undefined ? ['--since', options.since.toISOString()] : []),
      ...(options.follow ? ['--follow'] : []),
      container,
    ];
    await this.#podman
      .raw(argv, {
        signal,
        stream: true,
        onLine: (line, stream) => {
          // podman's own complaint, not the container's output (gone: nothing to read, the status says ERROR).
          if (NOISE.test(line) || (stream === 'stderr' && /^Error: .*no such container/i.test(line))) return;
          const parsed = parseTimestamped(line);
          onLine({
            instance,
            ...(parsed.timestamp !== undefined ? { timestamp: parsed.timestamp } : {}),
            message: parsed.message,
            stream,
          });
        },
      })
      .catch((e: unknown) => {
        if (signal.aborted) return undefined;
        throw e;
      });
  }
}
