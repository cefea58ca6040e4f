// The `local` runtime (DESIGN.md §4): podman `kube play` of the chart's Deployment, translated; the
// environment's podman network; public ports on 127.0.0.1; readiness probed by us, since podman's
// healthchecks need systemd timers.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '@stageline/log';
import type { ApplyResult, Runtime, RuntimeContext } from '../../app/ports.ts';
import { LABELS, type Manifest } from '../../domain/chart.ts';
import { lastLines, RolloutCanceled, RolloutError } from '../../domain/failures.ts';
import { ChartError, type LocalPlan, planLocal, publicPortsOf } from '../../domain/local-plan.ts';
import { localNetworkName, localPodName } from '../../domain/names.ts';
import type { Endpoint, Release } from '../../domain/release.ts';
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
}

export interface LocalRuntimeDeps {
  podman: Podman;
  ports: HostPortReservations;
  charts: ChartReader;
  /** Where the kube play inputs are kept (they hold secret values: removed on DELETE). */
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
    const plan = await this.#plan(release);
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
    }
    await this.#waitReady(plan, ctx, { since, baselineRestarts: 0 });
    return {
      endpoints: endpointsOf(plan),
      hostPorts: plan.published.map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort })),
      digest: await podman.imageDigest(plan.image),
      runtimeRevision: 0,
    };
  }

  async stop(release: Release, ctx: RuntimeContext): Promise<void> {
    const pod = localPodName(release.environmentId, release.serviceName);
    ctx.output(`podman pod stop ${pod} (volumes kept)`);
    await this.#deps.podman.stopPod(pod, STOP_TIMEOUT_SECONDS);
  }

  async restart(release: Release, ctx: RuntimeContext): Promise<ApplyResult> {
    const { podman } = this.#deps;
    const pod = localPodName(release.environmentId, release.serviceName);
    // Gone from podman (removed by hand, a wiped store): restarting means applying it again.
    if (!(await podman.podExists(pod))) {
      ctx.output(`pod ${pod} is gone: applying revision ${release.revision} again`);
      return this.apply(release, ctx);
    }
    const plan = await this.#plan(release);
    const before = await podman.inspectContainer(plan.containerName);
    const since = Date.now() / 1000;
    // Stop, then start: `podman pod restart` races with restartPolicy Always and sometimes starts the
    // container twice; a stopped pod is not restarted by the policy.
    ctx.output(`podman pod stop ${pod}; podman pod start ${pod}`);
    try {
      await podman.stopPod(pod, STOP_TIMEOUT_SECONDS);
      await podman.startPod(pod);
    } catch (e) {
      throw new RolloutError('failed', `podman pod restart failed: ${messageOf(e)}`, { cause: e });
    }
    await this.#waitReady(plan, ctx, { since, baselineRestarts: before?.restartCount ?? 0 });
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
    if (previous === undefined) {
      // Not the network: other services of the environment may be deploying onto it right now.
      await this.#removeWorkload(failed, ctx);
      return;
    }
    ctx.output(`re-applying revision ${previous.revision}`);
    await this.apply(previous, ctx);
  }

  async #removeWorkload(release: Release, ctx: RuntimeContext): Promise<void> {
    const { podman, ports, workDir } = this.#deps;
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

  async #plan(release: Release): Promise<LocalPlan> {
    if (release.chartPath === '') throw new RolloutError('failed', `revision ${release.revision} has no chart`);
    const manifests = await this.#deps.charts.manifests(release.chartPath);
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
