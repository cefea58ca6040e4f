// The `kubernetes` runtime's observer for the running status: `kubectl get pods --output json` of each
// namespace that holds a live release (every DEPLOY_RUNTIME_POLL_MS, by the watch), pods matched to
// releases by their `app.kubernetes.io/instance` label (the Helm release); `kubectl logs --selector` for
// the service's output. Argv only, through the command runner (tests record it).
import { DomainError } from '@stageline/errors';
import { helmReleaseName } from '@stageline/policy';
import type { LogOptions, Observation, RuntimeObserver, ServiceLogLine } from '../../app/runtime-status.ts';
import type { Release } from '../../domain/release.ts';
import { INSTANCE_LABEL, kubePodsByRelease, parseKubectlPrefixed } from '../../domain/runtime-facts.ts';
import type { CommandRunner } from '../process/command-runner.ts';

const OBSERVE_TIMEOUT_MS = 30_000;
/** How many pods' logs kubectl follows at once for one service (its default is 5). */
const MAX_LOG_REQUESTS = 20;

function target(release: Pick<Release, 'namespace' | 'kubeContext'>): string[] {
  return ['--namespace', release.namespace, ...(release.kubeContext !== '' ? ['--context', release.kubeContext] : [])];
}

function stderrOf(stderr: string): string {
  return (
    stderr
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')
      .slice(-3)
      .join(' | ') || 'no output'
  );
}

export class KubectlRuntimeObserver implements RuntimeObserver {
  readonly #runner: CommandRunner;
  readonly #kubectl: string;

  constructor(runner: CommandRunner, kubectl = 'kubectl') {
    this.#runner = runner;
    this.#kubectl = kubectl;
  }

  async observe(releases: readonly Release[]): Promise<Map<string, Observation>> {
    const result = new Map<string, Observation>();
    // One read per (context, namespace): an environment's services share it.
    const groups = new Map<string, Release[]>();
    for (const r of releases) {
      const key = JSON.stringify([r.kubeContext, r.namespace]);
      groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    for (const list of groups.values()) {
      const first = list[0]!;
      const answer = await this.#runner
        .run(this.#kubectl, ['get', 'pods', ...target(first), '--selector', INSTANCE_LABEL, '--output', 'json'], {
          // An unreachable cluster must not hold every later look (they wait for this one).
          signal: AbortSignal.timeout(OBSERVE_TIMEOUT_MS),
        })
        .catch((e: unknown) => ({ exitCode: -1, stdout: '', stderr: e instanceof Error ? e.message : String(e) }));
      let pods: ReturnType<typeof kubePodsByRelease> | undefined;
      let error = '';
      if (answer.exitCode !== 0) error = `kubectl get pods failed: ${stderrOf(answer.stderr)}`;
      else {
        try {
          pods = kubePodsByRelease(answer.stdout);
        } catch {
          error = 'kubectl get pods answered something that is not JSON';
        }
      }
      for (const r of list) {
        if (pods === undefined) result.set(r.id, { error });
        else result.set(r.id, { instances: pods.get(helmReleaseName(r.environmentId, r.serviceName)) ?? [] });
      }
    }
    return result;
  }

  async logs(
    release: Release,
    options: LogOptions,
    onLine: (line: ServiceLogLine) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const argv = [
      'logs',
      '--selector',
      `${INSTANCE_LABEL}=${helmReleaseName(release.environmentId, release.serviceName)}`,
      ...target(release),
      '--all-containers',
      '--prefix',
      '--timestamps',
      '--ignore-errors',
      '--max-log-requests',
      String(MAX_LOG_REQUESTS),
      '--tail',
      String(options.tailLines),
      ...(options.since !== undefined ? ['--since-time', options.since.toISOString()] : []),
      ...(options.follow ? ['--follow'] : []),
    ];
    const complaints: string[] = [];
    const result = await this.#runner
      .run(this.#kubectl, argv, {
        signal,
        stream: true,
        onLine: (line, stream) => {
          if (stream !== 'stdout') {
            complaints.push(line);
            if (complaints.length > 3) complaints.shift();
            return;
          }
          const parsed = parseKubectlPrefixed(line);
          onLine({
            instance: parsed.instance,
            ...(parsed.timestamp !== undefined ? { timestamp: parsed.timestamp } : {}),
            message: parsed.message,
            stream: '',
          });
        },
      })
      .catch((e: unknown) => {
        if (signal.aborted) return undefined;
        throw e;
      });
    if (result !== undefined && result.exitCode !== 0 && !signal.aborted) {
      throw new DomainError('UNAVAILABLE', `kubectl logs failed: ${stderrOf(complaints.join('\n'))}`);
    }
  }
}
