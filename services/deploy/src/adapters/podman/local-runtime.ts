// The `local` runtime (services/deploy/README.md): podman `kube play` of the chart's Deployment,
// translated; the environment's podman network; public ports on 127.0.0.1; readiness probed by us, since
// podman's healthchecks need systemd timers.
import { constants } from 'node:fs';
import { chmod, mkdir, open, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '@stageline/log';
import { redactor } from '@stageline/secrets';
import type { ApplyResult, Runtime, RuntimeContext } from '../../app/ports.ts';
import { LABELS, type Manifest } from '../../domain/chart.ts';
import { lastLines, RolloutCanceled, RolloutError } from '../../domain/failures.ts';
import { MAX_JOB_OUTPUT_BYTES, parseJobOutput } from '../../domain/job-output.ts';
import {
  ChartError,
  chartWorkloadKind,
  type LocalJobPlan,
  type LocalPlan,
  planLocal,
  planLocalJob,
  publicPortsOf,
} from '../../domain/local-plan.ts';
import { localNetworkName, localPodName } from '../../domain/names.ts';
import type { Endpoint, Release } from '../../domain/release.ts';
import { secretValuesIn } from '../../domain/secret-values.ts';
import { JOB_OUTPUT_DIR } from '../../domain/workload.ts';
import { CommandFailed } from '../process/command-runner.ts';
import type { ContainerState, Podman } from './podman.ts';
import { runProbe } from './probes.ts';

/** Host ports on 127.0.0.1 handed to services: stable per service across revisions, unique on the host. */
export interface HostPortReservations {
  /** A host port for each container port: the ones the service already holds, new free ones otherwise. */
  reserve(serviceId: string, environmentId: string, containerPorts: readonly number[]): Promise<Map<number, number>>;
  /** Frees every port of the service (DELETE, or a first deploy rolled back). */
  releaseService(serviceId: string): Promise<void>;
}

export interface ChartReader {
  /** The manifests in the chart directory's templates/. */
  manifests(chartPath: string): Promise<Manifest[]>;
  /** Set for a chart of the service's own (which only the kubernetes runtime renders). */
  customChart(chartPath: string): Promise<unknown>;
}

/** One execution of a job pod: how it ended, its output, its log lines. */
export interface JobRunResult {
  exitCode: number;
  outputs: Record<string, string>;
  attempts: number;
}

export interface LocalRuntimeDeps {
  podman: Podman;
  ports: HostPortReservations;
  charts: ChartReader;
  /** Where the kube play inputs are written (0600 in 0700 directories: they hold secret values; removed once podman has read them). */
  workDir: string;
  log: Logger;
}

// State checks between probes: a container that exits fails the deploy at once, not a period later.
const STATE_POLL_MS = 250;
// First probes come quickly (most services are up within a second), then every period.
const FIRST_PROBE_DELAYS_MS = [0, 250, 500, 1000];
const PROBE_TIMEOUT_MS = 1_000;
const LOG_TAIL_LINES = 10;
const STOP_TIMEOUT_SECONDS = 10;

const EXITED = new Set(['exited', 'stopped', 'dead']);

function abortable(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal }).catch(() => undefined);
}

export class LocalRuntime implements Runtime {
  readonly name = 'local';
  readonly #deps: LocalRuntimeDeps;

  constructor(deps: LocalRuntimeDeps) {
    this.#deps = deps;
  }

  async apply(release: Release, ctx: RuntimeContext): Promise<ApplyResult> {
    const { podman } = this.#deps;
    const manifests = await this.#manifests(release);
    const kind = chartWorkloadKind(manifests);
    if (kind === 'job') {
      const run = await this.runJob(release, `r${release.revision}`, ctx, manifests);
      return { endpoints: [], hostPorts: [], digest: '', runtimeRevision: 0, outputs: run.outputs };
    }
    if (kind === 'cron') {
      // The deploy service's scheduler runs it (podman kube play runs no CronJob); the image is pulled now,
      // so a tick starts fast.
      const plan = this.#jobPlan(release, manifests, 'check');
      await podman.ensureNetwork(plan.network, { [LABELS.environmentId]: release.environmentId });
      await this.#ensureImage(plan.image, ctx);
      ctx.output(`scheduled "${release.schedule}" (UTC): the deploy service runs it on every tick`);
      return { endpoints: [], hostPorts: [], digest: await podman.imageDigest(plan.image), runtimeRevision: 0 };
    }
    const plan = await this.#plan(release, manifests);
    await podman.ensureNetwork(plan.network, { [LABELS.environmentId]: release.environmentId });
    await this.#ensureImage(plan.image, ctx);
    for (const volume of plan.volumes) await podman.ensureVolume(volume.name, volume.labels);
    const file = await this.#writeKubeYaml(release, plan);
    this.#checkCanceled(ctx);

    // Stopping the old pod first (SIGTERM, its grace period) is what kube play --replace would do, but
    // --replace on a running pod takes ~3.5 s more in podman 4.3 (its forced removal waits), a stopped one not.
    if (await podman.podExists(plan.podName)) {
      ctx.output(`stopping the running pod ${plan.podName}`);
      await this.#stopBeforeRemoval(plan.podName, plan.stopTimeoutSeconds);
    }
    const since = Date.now() / 1000;
    ctx.output(`podman kube play ${plan.podName} on network ${plan.network}`);
    try {
      await podman.kubePlay(file, plan.network, plan.serviceName, ctx.signal);
    } catch (e) {
      this.#checkCanceled(ctx);
      throw new RolloutError('failed', `podman kube play failed: ${messageOf(e)}`, { cause: e });
    } finally {
      // It carries the secret values to podman: gone once podman has read it.
      await rm(file, { force: true });
    }
    await this.#waitReady(plan, ctx, { since, baselineRestarts: 0 });
    return {
      endpoints: endpointsOf(plan),
      hostPorts: plan.published.map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort })),
      digest: await podman.imageDigest(plan.image),
      runtimeRevision: 0,
    };
  }

  async serving(live: Release): Promise<{ ready: boolean; detail: string }> {
    if (live.kind === 'CRON_JOB' || live.kind === 'LIFECYCLE_JOB') return { ready: false, detail: 'a job' };
    const plan = await this.#plan(live);
    const state = await this.#deps.podman.inspectContainer(plan.containerName);
    if (state === undefined) return { ready: false, detail: `container ${plan.containerName} is gone` };
    if (state.status !== 'running')
      return { ready: false, detail: `container ${plan.containerName} is ${state.status}` };
    if (plan.probe === undefined) return { ready: true, detail: 'running' };
    const probed = await runProbe(plan.probe, probeTarget(plan, state, this.#deps.podman), PROBE_TIMEOUT_MS);
    return { ready: probed.ready, detail: probed.detail };
  }

  async stop(release: Release, ctx: RuntimeContext): Promise<void> {
    if (release.kind === 'CRON_JOB') {
      // Suspended: the scheduler only runs DEPLOYED schedules; a run in progress finishes.
      ctx.output('schedule suspended (runs in progress finish)');
      return;
    }
    const pod = localPodName(release.environmentId, release.serviceName);
    ctx.output(`podman pod stop ${pod} (volumes kept)`);
    await this.#deps.podman.stopPod(pod, STOP_TIMEOUT_SECONDS);
  }

  async restart(release: Release, ctx: RuntimeContext): Promise<ApplyResult> {
    const { podman } = this.#deps;
    if (release.kind === 'CRON_JOB') {
      ctx.output(`schedule "${release.schedule}" resumed`);
      return { endpoints: [], hostPorts: [], digest: release.digest, runtimeRevision: 0 };
    }
    const pod = localPodName(release.environmentId, release.serviceName);
    // Gone from podman (removed by hand, a wiped store): restarting means applying it again.
    if (!(await podman.podExists(pod))) {
      ctx.output(`pod ${pod} is gone: applying revision ${release.revision} again`);
      return this.apply(release, ctx);
    }
    const plan = await this.#plan(release);
    const since = Date.now() / 1000;
    // Stop, then start: `podman pod restart` races with restartPolicy Always and sometimes starts the
    // container twice; a stopped pod is not restarted by the policy.
    ctx.output(`podman pod stop ${pod}; podman pod start ${pod}`);
    let stopped: Awaited<ReturnType<typeof podman.inspectContainer>>;
    try {
      await podman.stopPod(pod, STOP_TIMEOUT_SECONDS);
      // Counted once stopped: the policy may still have restarted the container while the stop was
      // on its way (seen on a loaded machine), and that restart is ours, not a crash.
      stopped = await podman.inspectContainer(plan.containerName);
      await podman.startPod(pod);
    } catch (e) {
      throw new RolloutError('failed', `podman pod restart failed: ${messageOf(e)}`, { cause: e });
    }
    await this.#waitReady(plan, ctx, { since, baselineRestarts: stopped?.restartCount ?? 0 });
    return {
      endpoints: endpointsOf(plan),
      hostPorts: plan.published.map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort })),
      digest: release.digest,
      runtimeRevision: 0,
    };
  }

  async remove(release: Release, ctx: RuntimeContext): Promise<void> {
    await this.#removeWorkload(release, ctx);
    // The last service of an environment takes its network with it.
    const network = localNetworkName(release.environmentId);
    if (await this.#deps.podman.removeNetworkIfUnused(network)) ctx.output(`network ${network} removed`);
  }

  async rollbackTo(failed: Release, previous: Release | undefined, ctx: RuntimeContext): Promise<void> {
    if (failed.kind === 'LIFECYCLE_JOB' || failed.kind === 'CRON_JOB') {
      // A job leaves nothing running to roll back: only its failed run's pod goes.
      await this.#removeJobPods(failed, ctx, `r${failed.revision}`);
      return;
    }
    if (previous === undefined) {
      // Not the network: other services of the environment may be deploying onto it right now.
      await this.#removeWorkload(failed, ctx);
      return;
    }
    ctx.output(`re-applying revision ${previous.revision}`);
    await this.apply(previous, ctx);
  }

  async recover(
    next: Release,
    previous: Release | undefined,
    stuck: readonly Release[],
    ctx: RuntimeContext,
  ): Promise<string | undefined> {
    if (stuck.length === 0) return undefined;
    const revisions = stuck.map((r) => r.revision).join(', ');
    if (next.kind === 'LIFECYCLE_JOB' || next.kind === 'CRON_JOB') {
      for (const r of stuck) await this.#removeJobPods(r, ctx, `r${r.revision}`);
      return `revision ${revisions} was left mid-run by a stopped worker: its pods removed`;
    }
    if (previous === undefined) {
      // A first install left half-done: uninstall it, so the new revision starts from nothing.
      await this.#removeWorkload(stuck[0]!, ctx);
      return `revision ${revisions} was left mid-install by a stopped worker: uninstalled`;
    }
    // Every local update recreates the pod (kube play --replace): applying the next revision replaces
    // whatever the stuck one left, and a failure of it re-applies `previous`.
    return `revision ${revisions} was left mid-rollout by a stopped worker: replaced by revision ${next.revision}, revision ${previous.revision} is what a failure returns to`;
  }

  /**
   * Runs a Job's (or CronJob's) pod to completion, retrying a failed execution up to the job's retries,
   * each within its max duration; returns what it wrote to output.json. Throws RolloutError when every
   * execution failed, RolloutCanceled on cancel (its pod removed either way).
   */
  async runJob(
    release: Release,
    runName: string,
    given: RuntimeContext,
    manifestsGiven?: Manifest[],
  ): Promise<JobRunResult> {
    const { podman } = this.#deps;
    const manifests = manifestsGiven ?? (await this.#manifests(release));
    // What the job prints is stored and streamed (cron ticks too): never the secrets it was given.
    const redact = redactor(secretValuesIn(manifests));
    const ctx: RuntimeContext = { ...given, output: (line) => given.output(redact(line)) };
    const plan = this.#jobPlan(release, manifests, runName);
    await podman.ensureNetwork(plan.network, { [LABELS.environmentId]: release.environmentId });
    await this.#ensureImage(plan.image, ctx);
    const runDir = path.join(this.#deps.workDir, release.environmentId, release.serviceId, 'runs', runName);
    const outputDir = path.join(runDir, 'output');
    const attempts = plan.maxRetries + 1;
    let last = '';
    let lastCode = 0;
    try {
      for (let attempt = 1; attempt <= attempts; attempt++) {
        this.#checkCanceled(ctx);
        await rm(outputDir, { recursive: true, force: true });
        await mkdir(outputDir, { recursive: true, mode: 0o700 });
        const file = path.join(runDir, 'pod.yaml');
        await writeFile(file, this.#jobPlan(release, manifests, runName, outputDir).kubeYaml, { mode: 0o600 });
        ctx.output(
          `running ${plan.podName} (attempt ${attempt} of ${attempts}, at most ${plan.maxDurationSeconds}s each)`,
        );
        try {
          await podman.kubePlay(file, plan.network, plan.serviceName, ctx.signal);
        } catch (e) {
          this.#checkCanceled(ctx);
          throw new RolloutError('failed', `podman kube play failed: ${messageOf(e)}`, { cause: e });
        } finally {
          await rm(file, { force: true });
        }
        const exit = await this.#waitExit(plan, ctx);
        await this.#removePod(plan.podName, plan.stopTimeoutSeconds);
        if (exit.code === 0) {
          const outputs = parseJobOutput(await readJobOutput(outputDir));
          const keys = Object.keys(outputs);
          ctx.output(
            `completed (exit 0)${keys.length > 0 ? `; output.json gives ${keys.join(', ')} to later stages` : ''}`,
          );
          return { exitCode: 0, outputs, attempts: attempt };
        }
        last = exit.message;
        lastCode = exit.code;
        ctx.output(`attempt ${attempt} failed: ${exit.message}`);
      }
    } finally {
      await this.#removePod(plan.podName, plan.stopTimeoutSeconds);
      await rm(runDir, { recursive: true, force: true });
    }
    throw new RolloutError('exited', `${redact(last)}${attempts > 1 ? ` (after ${attempts} attempts)` : ''}`, {
      exitCode: lastCode,
    });
  }

  /** Until the job's container exits, its max duration passes (killed: a failure) or the run is canceled. */
  async #waitExit(plan: LocalJobPlan, ctx: RuntimeContext): Promise<{ code: number; message: string }> {
    const { podman } = this.#deps;
    const deadline = Date.now() + plan.maxDurationSeconds * 1000;
    const stopFollowing = new AbortController();
    const followed = { stdout: 0, stderr: 0 };
    const following = podman.followLogs(
      plan.containerName,
      (line, stream) => {
        followed[stream]++;
        ctx.output(`${plan.serviceName} | ${line}`);
      },
      stopFollowing.signal,
    );
    try {
      for (;;) {
        this.#checkCanceled(ctx);
        ctx.working();
        const state = await podman.inspectContainer(plan.containerName);
        if (state === undefined) throw new RolloutError('failed', `container ${plan.containerName} disappeared`);
        if (EXITED.has(state.status)) {
          if (state.exitCode === 0) return { code: 0, message: 'exit 0' };
          const tail = lastLines(await podman.logsTail(plan.containerName, LOG_TAIL_LINES), LOG_TAIL_LINES);
          return {
            code: state.exitCode,
            message: `job exited with code ${state.exitCode}${tail.length > 0 ? `: ${tail.join(' | ')}` : ''}`,
          };
        }
        if (Date.now() >= deadline) {
          await this.#stopBeforeRemoval(plan.podName, 0);
          return { code: 124, message: `job ran longer than its max duration of ${plan.maxDurationSeconds}s: killed` };
        }
        await abortable(STATE_POLL_MS, ctx.signal);
      }
    } finally {
      stopFollowing.abort();
      await following;
      const all = await podman.logs(plan.containerName);
      for (const stream of ['stdout', 'stderr'] as const) {
        for (const line of all[stream].slice(followed[stream])) ctx.output(`${plan.serviceName} | ${line}`);
      }
    }
  }

  async #removePod(pod: string, timeoutSeconds: number): Promise<void> {
    await this.#stopBeforeRemoval(pod, timeoutSeconds);
    await this.#deps.podman.removePod(pod, timeoutSeconds);
  }

  /** The pods of a job's runs (one run, or all of them). */
  async #removeJobPods(release: Release, ctx: RuntimeContext, runName?: string): Promise<void> {
    if (release.serviceId === '') return;
    const { podman } = this.#deps;
    const pods = await podman.podsWithLabel(LABELS.serviceId, release.serviceId);
    for (const pod of pods) {
      if (runName !== undefined && !pod.endsWith(`-${runName}`)) continue;
      ctx.output(`podman pod rm ${pod}`);
      await this.#removePod(pod, 0);
    }
  }

  #jobPlan(release: Release, manifests: Manifest[], runName: string, outputDir = '/nonexistent'): LocalJobPlan {
    try {
      return planLocalJob({
        environmentId: release.environmentId,
        manifests,
        runName,
        outputDir,
        outputMountPath: JOB_OUTPUT_DIR,
      });
    } catch (e) {
      if (e instanceof ChartError) throw new RolloutError('failed', e.message, { cause: e });
      throw e;
    }
  }

  async #manifests(release: Release): Promise<Manifest[]> {
    if (release.chartPath === '') throw new RolloutError('failed', `revision ${release.revision} has no chart`);
    if ((await this.#deps.charts.customChart(release.chartPath)) !== undefined) {
      throw new RolloutError(
        'failed',
        'the service names its own Helm chart: only the kubernetes runtime can render it, not local',
      );
    }
    return this.#deps.charts.manifests(release.chartPath);
  }

  async #removeWorkload(release: Release, ctx: RuntimeContext): Promise<void> {
    const { podman, ports, workDir } = this.#deps;
    // A job's runs (and a cron job's ones in progress) go with it.
    await this.#removeJobPods(release, ctx);
    const pod = localPodName(release.environmentId, release.serviceName);
    ctx.output(`podman pod rm ${pod}`);
    // Stop, then remove: a forced removal of a running pod takes seconds longer (see apply).
    await this.#stopBeforeRemoval(pod, STOP_TIMEOUT_SECONDS);
    await podman.removePod(pod, STOP_TIMEOUT_SECONDS);
    if (release.serviceId !== '') {
      const volumes = await podman.volumesWithLabel(LABELS.serviceId, release.serviceId);
      if (volumes.length > 0) ctx.output(`removing volumes ${volumes.join(', ')}`);
      await podman.removeVolumes(volumes);
      await ports.releaseService(release.serviceId);
    }
    await rm(path.join(workDir, release.environmentId, release.serviceId || release.serviceName), {
      recursive: true,
      force: true,
    });
  }

  /** Only a speed-up before a forced removal: a pod that refuses to stop (crash-looping) is removed anyway. */
  async #stopBeforeRemoval(pod: string, timeoutSeconds: number): Promise<void> {
    try {
      await this.#deps.podman.stopPod(pod, timeoutSeconds);
    } catch (e) {
      this.#deps.log.debug({ err: e, pod }, 'stop before removal failed; removing anyway');
    }
  }

  async #plan(release: Release, given?: Manifest[]): Promise<LocalPlan> {
    const manifests = given ?? (await this.#manifests(release));
    const hostPorts = await this.#deps.ports.reserve(
      release.serviceId,
      release.environmentId,
      publicPortsOf(manifests),
    );
    try {
      return planLocal({ environmentId: release.environmentId, manifests, hostPorts });
    } catch (e) {
      if (e instanceof ChartError) throw new RolloutError('failed', e.message, { cause: e });
      throw e;
    }
  }

  async #writeKubeYaml(release: Release, plan: LocalPlan): Promise<string> {
    const dir = path.join(this.#deps.workDir, release.environmentId, release.serviceId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700); // made by an older version, perhaps wider
    const file = path.join(dir, `${release.revision}.yaml`);
    await writeFile(file, plan.kubeYaml, { mode: 0o600 });
    return file;
  }

  async #ensureImage(image: string, ctx: RuntimeContext): Promise<void> {
    const { podman } = this.#deps;
    const byDigest = image.includes('@');
    // localhost/… is podman's own store: there is no registry to pull it from.
    if (image.startsWith('localhost/')) {
      if (await podman.imageExists(image)) return;
      throw new RolloutError('failed', `image ${image} is not in the local image store`);
    }
    // A digest names one image forever; a tag may have moved, so it is pulled again.
    if (byDigest && (await podman.imageExists(image))) {
      ctx.output(`image ${image} already present`);
      return;
    }
    ctx.output(`pulling ${image}`);
    try {
      await podman.pull(image, (line) => ctx.output(line), ctx.signal);
    } catch (e) {
      this.#checkCanceled(ctx);
      throw new RolloutError('failed', `pulling ${image} failed: ${messageOf(e)}`, { cause: e });
    }
  }

  #checkCanceled(ctx: RuntimeContext): void {
    if (ctx.signal.aborted) throw new RolloutCanceled();
  }

  /**
   * Until the probe passes (ready), the container exits (RolloutError 'exited', at once, with its exit code
   * and last log lines), the readiness timeout passes (RolloutError 'not-ready') or ctx.signal aborts.
   */
  async #waitReady(plan: LocalPlan, ctx: RuntimeContext, watch: { since: number; baselineRestarts: number }) {
    const { podman } = this.#deps;
    const started = Date.now();
    const deadline = started + plan.readinessTimeoutSeconds * 1000;
    const describeProbe =
      plan.probe === undefined
        ? 'running'
        : plan.probe.type === 'exec'
          ? `exec ${plan.probe.command.join(' ')}`
          : `${plan.probe.type} :${plan.probe.port}${plan.probe.type === 'http' ? plan.probe.path : ''}`;
    ctx.output(`waiting for readiness (${describeProbe}, at most ${plan.readinessTimeoutSeconds}s)`);

    const stopFollowing = new AbortController();
    const followed = { stdout: 0, stderr: 0 };
    const following = podman.followLogs(
      plan.containerName,
      (line, stream) => {
        followed[stream]++;
        ctx.output(`${plan.serviceName} | ${line}`);
      },
      stopFollowing.signal,
    );
    try {
      let nextProbeAt = started + plan.initialDelaySeconds * 1000;
      let probes = 0;
      let lastDetail = 'not probed yet';
      for (;;) {
        this.#checkCanceled(ctx);
        ctx.working();
        const state = await podman.inspectContainer(plan.containerName);
        if (state === undefined) throw new RolloutError('failed', `container ${plan.containerName} disappeared`);
        if (EXITED.has(state.status) || state.restartCount > watch.baselineRestarts) {
          throw await this.#exited(plan, state, watch.since);
        }
        const now = Date.now();
        if (state.status === 'running' && now >= nextProbeAt) {
          if (plan.probe === undefined) {
            ctx.output(`ready after ${((now - started) / 1000).toFixed(1)}s (running)`);
            return;
          }
          const result = await runProbe(plan.probe, probeTarget(plan, state, podman), PROBE_TIMEOUT_MS);
          if (result.ready) {
            ctx.output(`ready after ${((Date.now() - started) / 1000).toFixed(1)}s: ${result.detail}`);
            return;
          }
          lastDetail = result.detail;
          probes++;
          nextProbeAt = Date.now() + (FIRST_PROBE_DELAYS_MS[probes] ?? plan.periodSeconds * 1000);
        }
        if (Date.now() >= deadline) {
          const tail = lastLines(await podman.logsTail(plan.containerName, LOG_TAIL_LINES), LOG_TAIL_LINES);
          throw new RolloutError(
            'not-ready',
            `not ready after ${plan.readinessTimeoutSeconds}s: ${lastDetail}` +
              (tail.length > 0 ? `; last log lines: ${tail.join(' | ')}` : ''),
          );
        }
        await abortable(Math.max(10, Math.min(STATE_POLL_MS, nextProbeAt - Date.now())), ctx.signal);
      }
    } finally {
      stopFollowing.abort();
      await following;
      // The follower may not have caught up when the wait ends (a fast start, an exit): the log is
      // append-only, so what it has not printed yet is what comes after the lines it did.
      const all = await podman.logs(plan.containerName);
      for (const stream of ['stdout', 'stderr'] as const) {
        for (const line of all[stream].slice(followed[stream])) ctx.output(`${plan.serviceName} | ${line}`);
      }
    }
  }

  async #exited(plan: LocalPlan, state: ContainerState, since: number): Promise<RolloutError> {
    const { podman } = this.#deps;
    // Running again under restartPolicy Always: the exit code is only in the event log.
    const code = EXITED.has(state.status)
      ? state.exitCode
      : ((await podman.lastExitCode(state.id, since)) ?? state.exitCode);
    const tail = lastLines(await podman.logsTail(plan.containerName, LOG_TAIL_LINES), LOG_TAIL_LINES);
    return new RolloutError(
      'exited',
      `container exited with code ${code}${tail.length > 0 ? `: ${tail.join(' | ')}` : ''}`,
    );
  }
}

function probeTarget(plan: LocalPlan, state: ContainerState, podman: Podman) {
  return {
    address(port: number) {
      // A public port is probed where its users reach it: that checks the publishing too.
      const published = plan.published.find((p) => p.containerPort === port);
      if (published !== undefined) return { host: '127.0.0.1', port: published.hostPort };
      // Rootful podman routes the environment network from the host.
      const ip = state.addresses[plan.network];
      return ip === undefined ? undefined : { host: ip, port };
    },
    exec: (argv: readonly string[], signal: AbortSignal) => podman.exec(plan.containerName, argv, signal),
  };
}

function endpointsOf(plan: LocalPlan): Endpoint[] {
  return plan.published.map((p) => ({ port: p.containerPort, url: `http://127.0.0.1:${p.hostPort}` }));
}

function messageOf(e: unknown): string {
  if (e instanceof CommandFailed) return e.message;
  return e instanceof Error ? e.message : String(e);
}

/**
 * A job's output.json, as the workload left it in the directory the worker made and mounted: read
 * without following a symbolic link (the workload controls the directory's content, the worker runs
 * as root), only if it is a regular file, and never more than the size a job output may have.
 * '' when there is none.
 */
export async function readJobOutput(outputDir: string): Promise<string> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(
      path.join(outputDir, 'output.json'),
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
    );
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT') return '';
    if (code === 'ELOOP')
      throw new RolloutError('failed', 'output.json is a symbolic link: refused (write the file itself)');
    throw e;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new RolloutError('failed', 'output.json is not a regular file: refused');
    // One byte over the limit is enough for parseJobOutput to refuse it with the limit's words.
    const buffer = Buffer.alloc(MAX_JOB_OUTPUT_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}
