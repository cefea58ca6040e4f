// The `kubernetes` runtime (services/deploy/README.md): the generated chart through helm into the
// environment's namespace with its kubeconfig context; kubectl for stop and restart. Readiness is helm's
// --wait.
import { readdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import { helmReleaseName } from '@stageline/policy';
import type { ApplyResult, Runtime, RuntimeContext } from '../../app/ports.ts';
import { jobName } from '../../domain/chart.ts';
import { type CustomChartRef, VALUES_OVERRIDES_FILE, VALUES_STAGELINE_FILE } from '../../domain/custom-chart.ts';
import { RolloutCanceled, RolloutError } from '../../domain/failures.ts';
import { parseJobOutput } from '../../domain/job-output.ts';
import type { Release } from '../../domain/release.ts';
import type { CommandResult, CommandRunner } from '../process/command-runner.ts';

export interface KubernetesRuntimeDeps {
  runner: CommandRunner;
  /** Binaries (default "helm", "kubectl" and "git"). */
  helm?: string;
  kubectl?: string;
  git?: string;
  /**
   * The chart store: a release directory's custom chart reference (undefined: the chart Stageline
   * generated), and the chart in clear for the length of a helm command (the store keeps secrets sealed).
   * Left out (argv tests only), helm is given the release's chart path as it is.
   */
  charts?: {
    customChart(chartPath: string): Promise<CustomChartRef | undefined>;
    open(chartPath: string): Promise<{ dir: string; close(): Promise<void> }>;
  };
}

// Helm statuses of a release left mid-operation (a crash, a killed helm): the next upgrade would fail
// with "another operation (install/upgrade/rollback) is in progress".
const PENDING = new Set(['pending-install', 'pending-upgrade', 'pending-rollback']);

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
  readonly #git: string;
  readonly #charts: KubernetesRuntimeDeps['charts'];

  constructor(deps: KubernetesRuntimeDeps) {
    this.#runner = deps.runner;
    this.#helm = deps.helm ?? 'helm';
    this.#kubectl = deps.kubectl ?? 'kubectl';
    this.#git = deps.git ?? 'git';
    this.#charts = deps.charts;
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

  /** The chart argument(s) of `helm upgrade`: the generated chart's directory, or the service's own chart. */
  async #chartArgs(release: Release, opened: string, ctx: RuntimeContext): Promise<string[]> {
    const custom = await this.#charts?.customChart(release.chartPath);
    if (custom === undefined) return [opened];
    const values = [
      // The user's values first, Stageline's (the image from the mirror) last: later files win.
      '--values',
      path.join(opened, VALUES_OVERRIDES_FILE),
      '--values',
      path.join(opened, VALUES_STAGELINE_FILE),
    ];
    if (custom.type === 'path') {
      const checkout = path.join(opened, 'source');
      await this.#run(
        this.#git,
        ['clone', '--quiet', '--no-checkout', '--', custom.gitUrl, checkout],
        ctx,
        (r) => `git clone failed: ${detail(r)}`,
      );
      await this.#run(
        this.#git,
        ['-C', checkout, 'checkout', '--quiet', '--detach', custom.commit],
        ctx,
        (r) => `git checkout ${custom.commit} failed: ${detail(r)}`,
      );
      const chartDir = path.join(checkout, custom.path);
      // The repository is the user's: helm must not read, through a link, anything outside the chart.
      const leak = await linkLeaving(chartDir, checkout);
      if (leak !== undefined) throw new RolloutError('failed', `custom chart ${custom.path}: ${leak}: refused`);
      return [chartDir, ...values];
    }
    const version = custom.version !== '' ? ['--version', custom.version] : [];
    if (custom.url.startsWith('oci://')) {
      const ref = custom.name === '' ? custom.url : `${custom.url.replace(/\/+$/, '')}/${custom.name}`;
      return [ref, ...version, ...values];
    }
    return [custom.name, '--repo', custom.url, ...version, ...values];
  }

  async apply(release: Release, ctx: RuntimeContext): Promise<ApplyResult> {
    const name = helmReleaseName(release.environmentId, release.serviceName);
    const isJob = release.kind === 'LIFECYCLE_JOB';
    // The chart in clear (its Secret, a custom chart's values) only while helm reads it.
    const opened =
      this.#charts === undefined
        ? { dir: release.chartPath, close: async () => {} }
        : await this.#charts.open(release.chartPath);
    try {
      await this.#upgrade(name, release, opened.dir, isJob, ctx);
    } finally {
      await opened.close();
    }
    return {
      endpoints: [],
      hostPorts: [],
      digest: '',
      runtimeRevision: await this.#helmRevision(name, release, ctx),
      ...(isJob ? { outputs: await this.#jobOutputs(release, ctx) } : {}),
    };
  }

  async #upgrade(name: string, release: Release, chartDir: string, isJob: boolean, ctx: RuntimeContext): Promise<void> {
    await this.#run(
      this.#helm,
      [
        'upgrade',
        '--install',
        name,
        ...(await this.#chartArgs(release, chartDir, ctx)),
        ...this.#helmTarget(release),
        '--create-namespace',
        // --atomic: a rollout that is not ready in time is rolled back by helm itself.
        '--atomic',
        '--wait',
        // A lifecycle job's Job must complete, not only exist.
        ...(isJob ? ['--wait-for-jobs'] : []),
        '--timeout',
        this.#timeout(release),
      ],
      ctx,
      (r) =>
        /timed out|context deadline exceeded/i.test(r.stderr)
          ? `not ready after ${this.#timeout(release)}: ${detail(r)}`
          : `helm upgrade failed: ${detail(r)}`,
    );
  }

  /** A completed Job's output.json: its pod's termination message (the chart points it at the file). */
  async #jobOutputs(release: Release, ctx: RuntimeContext): Promise<Record<string, string>> {
    const result = await this.#run(
      this.#kubectl,
      [
        'get',
        'pods',
        '--selector',
        `job-name=${jobName({ name: release.serviceName }, release.revision)}`,
        ...this.#kubectlTarget(release),
        '--output',
        'json',
      ],
      ctx,
      (r) => `kubectl get pods failed: ${detail(r)}`,
    );
    type Pods = {
      items?: Array<{
        status?: { containerStatuses?: Array<{ state?: { terminated?: { exitCode?: number; message?: string } } }> };
      }>;
    };
    let pods: Pods;
    try {
      pods = JSON.parse(result.stdout) as Pods;
    } catch {
      throw new RolloutError('failed', 'kubectl get pods answered something that is not JSON');
    }
    for (const pod of pods.items ?? []) {
      const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
      if (terminated?.exitCode === 0) return parseJobOutput(terminated.message ?? '');
    }
    return {};
  }

  async recover(
    next: Release,
    previous: Release | undefined,
    _stuck: readonly Release[],
    ctx: RuntimeContext,
  ): Promise<string | undefined> {
    // Helm itself knows: whatever Stageline recorded, a pending status blocks the next upgrade.
    const name = helmReleaseName(next.environmentId, next.serviceName);
    const args = ['status', name, ...this.#helmTarget(next), '--output', 'json'];
    ctx.output(`${this.#helm} ${args.join(' ')}`);
    const result = await this.#runner.run(this.#helm, args, { signal: ctx.signal });
    if (result.exitCode !== 0) {
      if (/not found/i.test(result.stderr)) return undefined;
      throw new RolloutError('failed', `helm status failed: ${detail(result)}`);
    }
    let status = '';
    let version = 0;
    try {
      const parsed = JSON.parse(result.stdout) as { info?: { status?: string }; version?: number };
      status = parsed.info?.status ?? '';
      version = parsed.version ?? 0;
    } catch {
      return undefined;
    }
    if (!PENDING.has(status)) return undefined;
    if (status === 'pending-install' || version <= 1) {
      await this.#uninstall(next, ctx);
      return `release ${name} was stuck in ${status} (first revision): uninstalled`;
    }
    const to = previous !== undefined && previous.runtimeRevision > 0 ? previous.runtimeRevision : version - 1;
    await this.#run(
      this.#helm,
      ['rollback', name, String(to), ...this.#helmTarget(next), '--wait', '--timeout', this.#timeout(next)],
      ctx,
      (r) => `helm rollback of the stuck release failed: ${detail(r)}`,
    );
    return `release ${name} was stuck in ${status}: rolled back to helm revision ${to}`;
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

  /** `kubectl scale` / `rollout` target of a release: its Deployment or StatefulSet, by name or by label. */
  #workloadTarget(release: Release): string[] {
    if (release.kind === 'CUSTOM_CHART') {
      // A chart of the service's own: its workloads carry the release's instance label, by convention.
      return [
        'deployment,statefulset',
        '--selector',
        `app.kubernetes.io/instance=${helmReleaseName(release.environmentId, release.serviceName)}`,
      ];
    }
    return [release.kind === 'DATABASE' ? 'statefulset' : 'deployment', release.serviceName];
  }

  async #suspend(release: Release, suspend: boolean, ctx: RuntimeContext): Promise<void> {
    await this.#run(
      this.#kubectl,
      [
        'patch',
        'cronjob',
        release.serviceName,
        '--type',
        'merge',
        '--patch',
        JSON.stringify({ spec: { suspend } }),
        ...this.#kubectlTarget(release),
      ],
      ctx,
      (r) => `kubectl patch cronjob failed: ${detail(r)}`,
    );
  }

  async stop(release: Release, ctx: RuntimeContext): Promise<void> {
    if (release.kind === 'CRON_JOB') {
      await this.#suspend(release, true, ctx);
      return;
    }
    await this.#run(
      this.#kubectl,
      ['scale', ...this.#workloadTarget(release), '--replicas=0', ...this.#kubectlTarget(release)],
      ctx,
      (r) => `kubectl scale failed: ${detail(r)}`,
    );
  }

  async restart(release: Release, ctx: RuntimeContext): Promise<ApplyResult> {
    const target = this.#kubectlTarget(release);
    if (release.kind === 'CRON_JOB') {
      await this.#suspend(release, false, ctx);
      return { endpoints: [], hostPorts: [], digest: release.digest, runtimeRevision: release.runtimeRevision };
    }
    const deployment = `${release.kind === 'DATABASE' ? 'statefulset' : 'deployment'}/${release.serviceName}`;
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
    await this.#uninstall(release, ctx);
    if (release.kind === 'DATABASE') {
      // Claims made from a StatefulSet's templates are not the chart's: helm uninstall leaves them
      // (the retention policy removes them only where the cluster supports it). DELETE removes the data.
      await this.#run(
        this.#kubectl,
        [
          'delete',
          'persistentvolumeclaim',
          '--selector',
          `app.kubernetes.io/instance=${helmReleaseName(release.environmentId, release.serviceName)}`,
          '--ignore-not-found',
          '--wait=false',
          ...this.#kubectlTarget(release),
        ],
        ctx,
        (r) => `kubectl delete pvc failed: ${detail(r)}`,
      );
    }
  }

  async #uninstall(release: Release, ctx: RuntimeContext): Promise<void> {
    const name = helmReleaseName(release.environmentId, release.serviceName);
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
    const name = helmReleaseName(previous.environmentId, previous.serviceName);
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

/**
 * The first way the chart at `root` reaches outside itself through a symbolic link — the directory
 * resolving outside `boundary` (the repository), or a link in it whose resolved target is not under
 * the chart, or that resolves nowhere — as words; undefined when everything stays inside (or when
 * there is no such directory).
 */
export async function linkLeaving(root: string, boundary: string): Promise<string | undefined> {
  let real: string;
  let realBoundary: string;
  try {
    [real, realBoundary] = await Promise.all([realpath(root), realpath(boundary)]);
  } catch {
    // Nothing there: helm says so itself, with its own words.
    return undefined;
  }
  const under = (base: string, p: string) => p === base || p.startsWith(`${base}${path.sep}`);
  const inside = (p: string) => under(real, p);
  if (!under(realBoundary, real)) return 'the chart directory leaves the repository through a symbolic link';
  const walk = async (dir: string): Promise<string | undefined> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      const shown = path.relative(root, full);
      if (entry.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(full);
        } catch {
          return `${shown} is a symbolic link to nothing`;
        }
        if (!inside(target)) return `${shown} is a symbolic link leaving the chart`;
      } else if (entry.isDirectory()) {
        const found = await walk(full);
        if (found !== undefined) return found;
      }
    }
    return undefined;
  };
  return walk(real);
}
