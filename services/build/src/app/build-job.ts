// Build jobs (stageline.jobs.build.*): MIRROR copies a service's external image into the mirror registry
// (one MIRROR_IMAGE step, reported start to finish); GIT clones and builds (git-build.ts).

import type { JobContext } from '@stageline/bus';
import { DomainError } from '@stageline/errors';
import { bus, control } from '@stageline/proto';
import { metrics } from '@stageline/telemetry';
import type { MirrorStore } from '../adapters/db/mirror-store.ts';
import type { RegistryClient } from '../adapters/registry/client.ts';
import { type MirrorProgress, mirrorImage } from '../adapters/registry/mirror.ts';
import { formatReference, repositoryName } from '../adapters/registry/reference.ts';
import { type GitBuildDeps, gitBuildJob } from './git-build.ts';
import { type MirrorPlan, planMirror } from './mirror-plan.ts';

const { StepKind, StepOutcome, ServiceState } = control;
const MIRROR_STEP = StepKind.STEP_KIND_MIRROR_IMAGE;

export interface BuildJobDeps {
  registry: RegistryClient;
  /** host:port of the mirror registry (MIRROR_REGISTRY). */
  mirrorRegistry: string;
  mirrors: MirrorStore;
  /** GIT builds: without them, a GIT job fails saying so. */
  git?: GitBuildDeps;
  now?: () => Date;
}

export async function handleBuildJob(deps: BuildJobDeps, job: bus.BuildJob, ctx: JobContext): Promise<bus.JobFinished> {
  switch (job.kind) {
    case bus.BuildKind.BUILD_KIND_MIRROR:
      return mirrorJob(deps, job, ctx);
    case bus.BuildKind.BUILD_KIND_GIT:
      if (deps.git === undefined) return failed('this build worker is not set up for git builds');
      return gitBuildJob(deps.git, job, ctx);
    default:
      return failed(`unknown build kind ${job.kind}`);
  }
}

function failed(message: string): bus.JobFinished {
  return bus.JobFinished.fromPartial({ succeeded: false, state: ServiceState.SERVICE_STATE_BUILD_ERROR, message });
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}

function short(digest: string): string {
  return digest.length > 19 ? `${digest.slice(0, 19)}…` : digest;
}

function progressLine(event: MirrorProgress): string | undefined {
  switch (event.type) {
    case 'resolved':
      return `source ${event.source} is ${event.digest} (${event.mediaType})`;
    case 'cache-hit':
      return `${event.destination} already resolves to ${event.digest}`;
    case 'manifest':
      if (event.platform === undefined) return undefined; // the root manifest: the step's last line says it
      return `manifest ${event.platform} ${short(event.digest)} ${event.action === 'exists' ? 'already in the mirror' : 'copied'}`;
    case 'blob':
      switch (event.action) {
        case 'exists':
          return `blob ${short(event.digest)} (${bytes(event.size)}) already in the mirror`;
        case 'mounted':
          return `blob ${short(event.digest)} (${bytes(event.size)}) mounted from ${event.from}`;
        case 'copied':
          return `blob ${short(event.digest)} (${bytes(event.size)}) copied`;
      }
      return undefined;
    case 'bytes':
      return undefined;
    case 'retry':
      return `blob ${short(event.digest)}: reading it again (attempt ${event.attempt + 1}): ${event.reason}`;
  }
}

async function mirrorJob(deps: BuildJobDeps, job: bus.BuildJob, ctx: JobContext): Promise<bus.JobFinished> {
  const now = deps.now ?? (() => new Date());
  const startedAt = now();
  let plan: MirrorPlan | undefined;
  let planError: unknown;
  try {
    plan = planMirror(job, deps.mirrorRegistry);
  } catch (error) {
    planError = error;
  }
  const source = plan === undefined ? undefined : formatReference(plan.source);
  const destination = plan === undefined ? undefined : formatReference(plan.destination);
  await ctx.stepStarted(
    MIRROR_STEP,
    plan === undefined ? 'mirroring the service image' : `mirroring ${source} to ${destination}`,
  );
  const finish = async (outcome: control.StepOutcome, message: string): Promise<void> => {
    await ctx.stepFinished(
      control.Step.fromPartial({ kind: MIRROR_STEP, startedAt, finishedAt: now(), outcome, message }),
    );
  };
  if (plan === undefined) {
    const message = planError instanceof Error ? planError.message : String(planError);
    ctx.output(`cannot mirror: ${message}`, MIRROR_STEP);
    await finish(StepOutcome.STEP_OUTCOME_ERROR, message);
    return failed(message);
  }

  ctx.output(`mirroring ${source} to ${destination}`, MIRROR_STEP);
  const mountFrom = await deps.mirrors.repositoriesMirroredFrom(repositoryName(plan.source)).catch((error: unknown) => {
    // Only an optimization: without it, blobs are copied instead of mounted.
    ctx.log.warn({ err: error }, 'could not read earlier mirrors for mount candidates');
    return [];
  });
  // Large blobs: a progress line at every quarter, and a heartbeat per chunk.
  const quarters = new Map<string, number>();
  const onProgress = (event: MirrorProgress): void => {
    ctx.working();
    if (event.type === 'bytes') {
      if (event.size <= 0) return;
      const quarter = Math.floor((event.sent / event.size) * 4);
      if (quarter > (quarters.get(event.digest) ?? 0) && quarter < 4) {
        quarters.set(event.digest, quarter);
        ctx.output(`blob ${short(event.digest)}: ${bytes(event.sent)} of ${bytes(event.size)}`, MIRROR_STEP);
      }
      return;
    }
    const line = progressLine(event);
    if (line !== undefined) ctx.output(line, MIRROR_STEP);
  };

  try {
    const result = await mirrorImage(deps.registry, plan.source, plan.destination, {
      signal: ctx.signal,
      force: job.forceBuild,
      mountFrom,
      onProgress,
    });
    const mirrored = `${repositoryName(plan.destination)}@${result.digest}`;
    try {
      await deps.mirrors.record({
        sourceRef: formatReference(plan.source),
        sourceRepository: repositoryName(plan.source),
        sourceDigest: result.source.digest,
        destinationRef: destination!,
        destinationRepository: plan.destination.repository,
        digest: result.digest,
      });
    } catch (error) {
      // The image is in the mirror either way; the record only explains it later.
      ctx.log.warn({ err: error }, 'could not record the mirrored image');
    }
    const seconds = ((now().getTime() - startedAt.getTime()) / 1000).toFixed(1);
    metrics.mirrorBytes.inc(result.bytesCopied);
    let message: string;
    if (result.cacheHit) {
      message = `cache hit: mirror already has ${mirrored}`;
    } else {
      const b = result.blobs;
      message =
        `mirrored ${source} to ${mirrored} in ${seconds} s: ${b.copied} blob(s) copied (${bytes(result.bytesCopied)}), ` +
        `${b.mounted} mounted, ${b.exists} already there` +
        (result.manifests.copied > 1 ? `, ${result.manifests.copied} manifests` : '');
    }
    ctx.output(message, MIRROR_STEP);
    await finish(result.cacheHit ? StepOutcome.STEP_OUTCOME_CACHE_HIT : StepOutcome.STEP_OUTCOME_SUCCESS, message);
    return bus.JobFinished.fromPartial({
      succeeded: true,
      message,
      image: `${formatReference(plan.destination)}@${result.digest}`,
    });
  } catch (error) {
    if (ctx.signal.aborted) {
      const message = `canceled while mirroring ${source}`;
      ctx.output(message, MIRROR_STEP);
      await finish(StepOutcome.STEP_OUTCOME_CANCELED, message);
      return bus.JobFinished.fromPartial({ succeeded: false, state: ServiceState.SERVICE_STATE_CANCELED, message });
    }
    const message =
      error instanceof DomainError
        ? error.message
        : `mirroring ${source} failed: ${error instanceof Error ? error.message : String(error)}`;
    if (!(error instanceof DomainError)) ctx.log.error({ err: error }, 'mirror failed unexpectedly');
    ctx.output(message, MIRROR_STEP);
    await finish(StepOutcome.STEP_OUTCOME_ERROR, message);
    return failed(message);
  }
}
