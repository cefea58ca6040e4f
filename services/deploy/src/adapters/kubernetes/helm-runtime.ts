// The `kubernetes` runtime (services/deploy/README.md): the generated chart through helm into the
// environment's namespace with its kubeconfig context; kubectl for stop and restart. Readiness is helm's
// --wait. The helm version is detected once per worker and decides the flags.
import { mkdtemp, readdir, realpath, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { failedPrecondition } from '@stageline/errors';
import { helmReleaseName } from '@stageline/policy';
import type { ApplyResult, Runtime, RuntimeContext } from '../../app/ports.ts';
import { jobName, type Manifest } from '../../domain/chart.ts';
import { type CustomChartRef, VALUES_OVERRIDES_FILE, VALUES_STAGELINE_FILE } from '../../domain/custom-chart.ts';
import { RolloutCanceled, RolloutError } from '../../domain/failures.ts';
import { parseJobOutput } from '../../domain/job-output.ts';
import {
  endpointsFromIngress,
  endpointsFromService,
  type HelmFlags,
  helmFlags,
  listedWorkloads,
  nodeAddress,
  parseHelmVersion,
  publicServiceName,
  pullSecretManifest,
  releaseWorkloads,
  SUPPORTED_HELM,
  unsupportedHelm,
} from '../../domain/kube-target.ts';
import type { Endpoint, Release } from '../../domain/release.ts';
import type { KubernetesTarget } from '../../domain/workload.ts';
import type { CommandResult, CommandRunner } from '../process/command-runner.ts';

export interface KubernetesRuntimeDeps {
  runner: CommandRunner;
  /** Binaries (default "helm", "kubectl" and "git"). */
  helm?: string;
  kubectl?: string;
  git?: string;
  /**
   * Reads a release directory: its custom chart reference (undefined: the chart Stageline generated),
   * and the generated chart's manifests (what is exposed, so its endpoints can be read back).
   */
  charts?: {
    customChart(chartPath: string): Promise<CustomChartRef | undefined>;
    manifests?(chartPath: string): Promise<Manifest[]>;
    /**
     * The chart in clear for the length of a helm command (the store keeps its secrets sealed). Left
     * out (argv tests only), helm is given the release's chart path as it is.
     */
    open?(chartPath: string): Promise<{ dir: string; close(): Promise<void> }>;
  };
  /**
   * The mirror: the address deploy jobs name (push) and the one each kube context's nodes pull from
   * ('' key: every other context). Absent: nodes pull from the address jobs name.
   */
  mirror?: { push: string; pull: Readonly<Record<string, string>> };
  /** The mirror's credentials: a pull secret is kept in every namespace deployed to. Absent: anonymous pulls. */
  mirrorCredentials?: { username: string; password: string };
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
  readonly #mirror: KubernetesRuntimeDeps['mirror'];
  readonly #mirrorCredentials: KubernetesRuntimeDeps['mirrorCredentials'];
  /** The helm version's flags, detected once per worker (an unsupported version stays refused). */
  #flags: Promise<HelmFlags> | undefined;

  constructor(deps: KubernetesRuntimeDeps) {
    this.#runner = deps.runner;
    this.#helm = deps.helm ?? 'helm';
    this.#kubectl = deps.kubectl ?? 'kubectl';
    this.#git = deps.git ?? 'git';
    this.#charts = deps.charts;
    this.#mirror = deps.mirror;
    this.#mirrorCredentials = deps.mirrorCredentials;
  }

  kubernetesTarget(kubeContext: string): KubernetesTarget {
    const push = this.#mirror?.push ?? '';
    const pull = this.#mirror?.pull[kubeContext] ?? this.#mirror?.pull[''] ?? push;
    return { mirror: { push, pull }, pullSecret: this.#mirrorCredentials !== undefined };
  }

  async preflight(ctx: RuntimeContext): Promise<void> {
    await this.#helmFlags(ctx);
  }

  /** `helm version` once per worker: helm 3 and helm 4 spell rollback-on-failure and wait differently. */
  #helmFlags(ctx: RuntimeContext): Promise<HelmFlags> {
    if (this.#flags === undefined) {
      const detecting = this.#detectHelm(ctx);
      this.#flags = detecting;
      // A helm that could not run at all is asked again next time (it may be installed meanwhile).
      detecting.catch((e) => {
        if (e instanceof RolloutError || e instanceof RolloutCanceled) this.#flags = undefined;
      });
    }
    return this.#flags;
  }

  async #detectHelm(ctx: RuntimeContext): Promise<HelmFlags> {
    // The template is ours, a constant: nothing of a user's reaches it.
    const result = await this.#run(
      this.#helm,
      ['version', '--template', '{{.Version}}'],
      ctx,
      (r) => `helm version failed: ${detail(r)}`,
    );
    const version = parseHelmVersion(result.stdout);
    if (version === undefined) {
      throw failedPrecondition(
        `helm version answered ${JSON.stringify(result.stdout.trim().slice(0, 80))}, not a version (${SUPPORTED_HELM} needed)`,
      );
    }
    const unsupported = unsupportedHelm(version);
    if (unsupported !== undefined) throw failedPrecondition(unsupported);
    ctx.output(`helm ${version.text}`);
    return helmFlags(version);
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
  /** `opened`: the chart's directory in clear (the store's copy for this command). */
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
    const flags = await this.#helmFlags(ctx);
    // The chart in clear (its Secret, a custom chart's values) only while helm reads it.
    const opened =
      this.#charts?.open === undefined
        ? { dir: release.chartPath, close: async () => {} }
        : await this.#charts.open(release.chartPath);
    try {
      const chartArgs = await this.#chartArgs(release, opened.dir, ctx);
      await this.#ensurePullSecret(release, ctx);
      await this.#upgrade(name, release, chartArgs, flags, isJob, ctx);
    } finally {
      await opened.close();
    }
    return {
      endpoints: await this.#endpoints(release, ctx),
      hostPorts: [],
      digest: '',
      runtimeRevision: await this.#helmRevision(name, release, ctx),
      ...(isJob ? { outputs: await this.#jobOutputs(release, ctx) } : {}),
    };
  }

  async #upgrade(
    name: string,
    release: Release,
    chartArgs: readonly string[],
    flags: HelmFlags,
    isJob: boolean,
    ctx: RuntimeContext,
  ): Promise<void> {
    await this.#run(
      this.#helm,
      [
        'upgrade',
        '--install',
        name,
        ...chartArgs,
        ...this.#helmTarget(release),
        '--create-namespace',
        // A rollout that is not ready in time is rolled back by helm itself (helm 3: --atomic).
        ...flags.rollbackOnFailure,
        ...flags.wait,
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

  /**
   * The namespace (created if missing) with the mirror's pull secret, applied before every upgrade so
   * new credentials reach it. The file is ours (0600, removed after): the password never is an argument.
   */
  async #ensurePullSecret(release: Release, ctx: RuntimeContext): Promise<void> {
    const credentials = this.#mirrorCredentials;
    if (credentials === undefined) return;
    const registry = this.kubernetesTarget(release.kubeContext).mirror.pull;
    const list = {
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: release.namespace } },
        pullSecretManifest(registry, credentials),
      ],
    };
    const dir = await mkdtemp(path.join(os.tmpdir(), 'stageline-pull-secret-'));
    try {
      const file = path.join(dir, 'pull-secret.json');
      await writeFile(file, JSON.stringify(list), { mode: 0o600 });
      await this.#run(
        this.#kubectl,
        ['apply', '--filename', file, ...this.#kubectlTarget(release)],
        ctx,
        (r) => `kubectl apply of the mirror's pull secret failed: ${detail(r)}`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Where the public ports answer from outside the cluster, read back from what the chart exposed: the
   * public Service's node ports (on a node's address) or load balancer, or the Ingress's hosts. A value
   * the cluster has not assigned yet (a pending load balancer) gives no endpoint, not a failure.
   */
  async #endpoints(release: Release, ctx: RuntimeContext): Promise<Endpoint[]> {
    if (release.kind !== 'CONTAINER' && release.kind !== 'APPLICATION' && release.kind !== '') return [];
    const manifests = (await this.#charts?.manifests?.(release.chartPath)) ?? [];
    const publicName = publicServiceName(release.serviceName);
    const service = manifests.find((m) => m.kind === 'Service' && m.metadata.name === publicName);
    const ingress = manifests.find((m) => m.kind === 'Ingress');
    const get = async (what: string[]) =>
      (
        await this.#run(
          this.#kubectl,
          ['get', ...what, ...this.#kubectlTarget(release), '--output', 'json'],
          ctx,
          (r) => `kubectl get ${what.join(' ')} failed: ${detail(r)}`,
        )
      ).stdout;
    let endpoints: Endpoint[] = [];
    try {
      if (ingress !== undefined) {
        endpoints = endpointsFromIngress(await get(['ingress', ingress.metadata.name]));
      } else if (service !== undefined) {
        const json = await get(['service', publicName]);
        const spec = (service as { spec?: { type?: string } }).spec;
        const node = spec?.type === 'NodePort' ? await this.#nodeAddress(release, ctx) : undefined;
        endpoints = endpointsFromService(json, node);
      } else {
        return [];
      }
    } catch (e) {
      if (ctx.signal.aborted) throw new RolloutCanceled();
      ctx.output(`endpoints not read: ${e instanceof Error ? e.message : String(e)}`);
      return [];
    }
    if (endpoints.length === 0) ctx.output('no endpoint assigned by the cluster yet');
    return endpoints;
  }

  /** A node's address for NodePort endpoints (`kubectl get nodes`, cluster-wide: RBAC may refuse it). */
  async #nodeAddress(release: Release, ctx: RuntimeContext): Promise<string | undefined> {
    const target = release.kubeContext !== '' ? ['--context', release.kubeContext] : [];
    const result = await this.#run(
      this.#kubectl,
      ['get', 'nodes', ...target, '--output', 'json'],
      ctx,
      (r) => `kubectl get nodes failed: ${detail(r)}`,
    );
    return nodeAddress(result.stdout);
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
    const flags = await this.#helmFlags(ctx);
    await this.#run(
      this.#helm,
      ['rollback', name, String(to), ...this.#helmTarget(next), ...flags.wait, '--timeout', this.#timeout(next)],
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

  /** `kubectl scale` target of a release: its Deployment or StatefulSet, by name or by label. */
  #workloadTarget(release: Release): string[] {
    if (release.kind === 'CUSTOM_CHART') {
      // A chart of the service's own: its workloads carry the release's instance label, by convention.
      return ['deployment,statefulset', '--selector', instanceSelector(release)];
    }
    return [release.kind === 'DATABASE' ? 'statefulset' : 'deployment', release.serviceName];
  }

  /**
   * The workloads a RESTART acts on, as `<kind>/<name>`, each with the replicas a stopped one goes back
   * to: Stageline's own by name (1 replica); a custom chart's are whatever carries the release's instance
   * label (its names are the chart's: `<release>-<chart>`, rarely the service's), with the replicas its
   * release manifest declares (`helm get manifest`) — a stopped one was scaled to 0.
   */
  async #restartTargets(release: Release, ctx: RuntimeContext): Promise<Array<{ target: string; replicas: number }>> {
    if (release.kind !== 'CUSTOM_CHART') {
      return [
        { target: `${release.kind === 'DATABASE' ? 'statefulset' : 'deployment'}/${release.serviceName}`, replicas: 1 },
      ];
    }
    const selector = instanceSelector(release);
    const listed = await this.#run(
      this.#kubectl,
      ['get', 'deployment,statefulset', '--selector', selector, ...this.#kubectlTarget(release), '--output', 'json'],
      ctx,
      (r) => `kubectl get deployment,statefulset failed: ${detail(r)}`,
    );
    let workloads: ReturnType<typeof listedWorkloads>;
    try {
      workloads = listedWorkloads(listed.stdout);
    } catch (e) {
      throw new RolloutError('failed', e instanceof Error ? e.message : String(e));
    }
    if (workloads.length === 0) {
      throw new RolloutError(
        'failed',
        `the release's chart has no Deployment or StatefulSet labelled ${selector}: nothing to restart`,
      );
    }
    let declared: ReturnType<typeof releaseWorkloads> = [];
    if (release.status === 'STOPPED') {
      const manifest = await this.#run(
        this.#helm,
        ['get', 'manifest', helmReleaseName(release.environmentId, release.serviceName), ...this.#helmTarget(release)],
        ctx,
        (r) => `helm get manifest failed: ${detail(r)}`,
      );
      declared = releaseWorkloads(manifest.stdout);
    }
    return workloads.map((w) => ({
      target: `${w.kind.toLowerCase()}/${w.name}`,
      replicas: declared.find((d) => d.kind === w.kind && d.name === w.name)?.replicas ?? 1,
    }));
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
    const workloads = await this.#restartTargets(release, ctx);
    for (const { target: workload, replicas } of workloads) {
      if (release.status === 'STOPPED') {
        // A rollout restart of zero replicas starts nothing: scale back up instead.
        await this.#run(
          this.#kubectl,
          ['scale', workload, `--replicas=${replicas}`, ...target],
          ctx,
          (r) => `kubectl scale failed: ${detail(r)}`,
        );
      } else {
        await this.#run(
          this.#kubectl,
          ['rollout', 'restart', workload, ...target],
          ctx,
          (r) => `kubectl rollout restart failed: ${detail(r)}`,
        );
      }
    }
    for (const { target: workload } of workloads) {
      await this.#run(
        this.#kubectl,
        ['rollout', 'status', workload, ...target, '--watch', `--timeout=${this.#timeout(release)}`],
        ctx,
        (r) => `not ready after ${this.#timeout(release)}: ${detail(r)}`,
      );
    }
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
          instanceSelector(release),
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
    const flags = await this.#helmFlags(ctx);
    const args = ['uninstall', name, ...this.#helmTarget(release), ...flags.wait, '--timeout', this.#timeout(release)];
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
    const flags = await this.#helmFlags(ctx);
    await this.#run(
      this.#helm,
      [
        'rollback',
        name,
        // Helm's own number of the previous release; 0 means "the one before the current".
        String(previous.runtimeRevision),
        ...this.#helmTarget(previous),
        ...flags.wait,
        '--timeout',
        this.#timeout(previous),
      ],
      ctx,
      (r) => `helm rollback failed: ${detail(r)}`,
    );
  }
}

/** The label selector of everything a release installed (charts label their objects with the release). */
function instanceSelector(release: Release): string {
  return `app.kubernetes.io/instance=${helmReleaseName(release.environmentId, release.serviceName)}`;
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
