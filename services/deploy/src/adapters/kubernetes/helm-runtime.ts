// The `kubernetes` runtime (DESIGN.md §4): the generated chart through helm into the environment's
// namespace with its kubeconfig context; kubectl for stop and restart. Readiness is helm's --wait.
import type { ApplyResult, Runtime, RuntimeContext } from '../../app/ports.ts';
import { RolloutCanceled, RolloutError } from '../../domain/failures.ts';
import { helmReleaseName } from '../../domain/names.ts';
import type { Release } from '../../domain/release.ts';
import type { CommandResult, CommandRunner } from '../process/command-runner.ts';

export interface KubernetesRuntimeDeps {
  runner: CommandRunner;
  /** Binaries (default "helm" and "kubectl"). */
  helm?: string;
  kubectl?: string;
}

const MIN_TIMEOUT_SECONDS = 30;

function detail(result: CommandResult): string {
  const lines = result.stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  return lines.slice(-5).join(' | ') || `exit ${result.exitCode}`;
}

export class KubernetesRuntime implements Runtime {
  readonly name = 'kubernetes';
  readonly #runner: CommandRunner;
  readonly #helm: string;
  readonly #kubectl: string;

  constructor(deps: KubernetesRuntimeDeps) {
    this.#runner = deps.runner;
    this.#helm = deps.helm ?? 'helm';
    this.#kubectl = deps.kubectl ?? 'kubectl';
  }

  /** `--namespace <ns> [--kube-context <ctx>]` (helm) — no context: the kubeconfig's current one. */
  #helmTarget(release: Release): string[] {
    return [
      '--namespace',
      release.namespace,
      ...(release.kubeContext !== '' ? ['--kube-context', release.kubeContext] : []),
    ];
  }

  /** kubectl spells the context flag `--context`. */
  #kubectlTarget(release: Release): string[] {
    return [
      '--namespace',
      release.namespace,
      ...(release.kubeContext !== '' ? ['--context', release.kubeContext] : []),
    ];
  }

  #timeout(release: Release): string {
    return `${Math.max(release.readinessTimeoutSeconds, MIN_TIMEOUT_SECONDS)}s`;
  }

  async #run(
    binary: string,
    args: string[],
    ctx: RuntimeContext,
    failure: (result: CommandResult) => string,
  ): Promise<CommandResult> {
    ctx.output(`${binary} ${args.join(' ')}`);
    let result: CommandResult;
    try {
      result = await this.#runner.run(binary, args, { signal: ctx.signal, onLine: (line) => ctx.output(line) });
    } catch (e) {
      if (ctx.signal.aborted) throw new RolloutCanceled();
      throw new RolloutError('failed', `${binary} could not run: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
    }
    if (result.exitCode !== 0) throw new RolloutError('failed', failure(result));
    return result;
  }

  async apply(release: Release, ctx: RuntimeContext): Promise<ApplyResult> {
    const name = helmReleaseName(release.serviceName);
    await this.#run(
      this.#helm,
      [
        'upgrade',
        '--install',
        name,
        release.chartPath,
        ...this.#helmTarget(release),
        '--create-namespace',
        // --atomic: a rollout that is not ready in time is rolled back by helm itself.
        '--atomic',
        '--wait',
        '--timeout',
        this.#timeout(release),
      ],
      ctx,
      (r) =>
        /timed out|context deadline exceeded/i.test(r.stderr)
          ? `not ready after ${this.#timeout(release)}: ${detail(r)}`
          : `helm upgrade failed: ${detail(r)}`,
    );
    return {
      endpoints: [],
      hostPorts: [],
      digest: '',
      runtimeRevision: await this.#helmRevision(name, release, ctx),
    };
  }

  /** Helm's revision of the release now, so a later rollback can name it exactly (0 if unknown). */
  async #helmRevision(name: string, release: Release, ctx: RuntimeContext): Promise<number> {
    const result = await this.#run(
      this.#helm,
      ['history', name, ...this.#helmTarget(release), '--max', '1', '--output', 'json'],
      ctx,
      (r) => `helm history failed: ${detail(r)}`,
    );
    try {
      const [latest] = JSON.parse(result.stdout) as Array<{ revision?: number }>;
      return typeof latest?.revision === 'number' ? latest.revision : 0;
    } catch {
      return 0;
    }
  }

  async stop(release: Release, ctx: RuntimeContext): Promise<void> {
    await this.#run(
      this.#kubectl,
      ['scale', 'deployment', release.serviceName, '--replicas=0', ...this.#kubectlTarget(release)],
      ctx,
      (r) => `kubectl scale failed: ${detail(r)}`,
    );
  }

  async restart(release: Release, ctx: RuntimeContext): Promise<ApplyResult> {
    const target = this.#kubectlTarget(release);
    const deployment = `deployment/${release.serviceName}`;
    if (release.status === 'STOPPED') {
      // A rollout restart of zero replicas starts nothing: scale back up instead.
      await this.#run(
        this.#kubectl,
        ['scale', deployment, '--replicas=1', ...target],
        ctx,
        (r) => `kubectl scale failed: ${detail(r)}`,
      );
    } else {
      await this.#run(
        this.#kubectl,
        ['rollout', 'restart', deployment, ...target],
        ctx,
        (r) => `kubectl rollout restart failed: ${detail(r)}`,
      );
    }
    await this.#run(
      this.#kubectl,
      ['rollout', 'status', deployment, ...target, '--watch', `--timeout=${this.#timeout(release)}`],
      ctx,
      (r) => `not ready after ${this.#timeout(release)}: ${detail(r)}`,
    );
    return {
      endpoints: release.endpoints,
      hostPorts: [],
      digest: release.digest,
      runtimeRevision: release.runtimeRevision,
    };
  }

  async remove(release: Release, ctx: RuntimeContext): Promise<void> {
    // The chart's PVC is one of its templates: uninstalling removes the data too (DESIGN.md §4).
    await this.#uninstall(release, ctx);
  }

  async #uninstall(release: Release, ctx: RuntimeContext): Promise<void> {
    const name = helmReleaseName(release.serviceName);
    const args = ['uninstall', name, ...this.#helmTarget(release), '--wait', '--timeout', this.#timeout(release)];
    ctx.output(`${this.#helm} ${args.join(' ')}`);
    const result = await this.#runner.run(this.#helm, args, { signal: ctx.signal, onLine: (l) => ctx.output(l) });
    // Already gone (never installed, or --atomic removed a failed first install): that is the goal.
    if (result.exitCode !== 0 && !/not found/i.test(result.stderr)) {
      throw new RolloutError('failed', `helm uninstall failed: ${detail(result)}`);
    }
  }

  async rollbackTo(failed: Release, previous: Release | undefined, ctx: RuntimeContext): Promise<void> {
    if (previous === undefined) {
      await this.#uninstall(failed, ctx);
      return;
    }
    const name = helmReleaseName(previous.serviceName);
    await this.#run(
      this.#helm,
      [
        'rollback',
        name,
        // Helm's own number of the previous release; 0 means "the one before the current".
        String(previous.runtimeRevision),
        ...this.#helmTarget(previous),
        '--wait',
        '--timeout',
        this.#timeout(previous),
      ],
      ctx,
      (r) => `helm rollback failed: ${detail(r)}`,
    );
  }
}
