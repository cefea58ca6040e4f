// GIT build jobs (APPLICATION services, jobs built from git; services/build/README.md):
//
//   GIT_CLONE  fetch the commit (a branch or tag resolved to its head now, reported back so the run
//              records it) and read the Dockerfile at it;
//   BUILD      compute the cache key and explain it against the service's previous build; a tag for
//              the key already in the mirror is a cache hit. Otherwise take the key's lock (an identical
//              build in flight elsewhere is waited for and shared), check the tree out, build with the
//              Builder and push to `<mirror>/<project>/<repo-slug>:build-<key>`.
//
// Every line of output and every message goes through a redactor holding the service's secret values
// and the git credentials. A build past `build_timeout_seconds` is stopped and fails with that reason.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { isWorkerStopping, type JobContext } from '@stageline/bus';
import { DomainError } from '@stageline/errors';
import { bus, control } from '@stageline/proto';
import { type Redact, redactor } from '@stageline/secrets';
import { metrics } from '@stageline/telemetry';
import { type Builder, BuildFailure } from '../adapters/builder/builder.ts';
import type { BuildStore } from '../adapters/db/build-store.ts';
import {
  describeRef,
  type FetchedCommit,
  type GitClient,
  GitError,
  type GitRef,
  gitRefFor,
  parseGitUrl,
} from '../adapters/git/git.ts';
import type { AcquireOptions, HeldLock } from '../adapters/nats/build-lock.ts';
import type { RegistryClient } from '../adapters/registry/client.ts';
import { formatReference, type ImageReference } from '../adapters/registry/reference.ts';
import {
  type BuildArgValue,
  buildRepository,
  cacheKey,
  type Fingerprint,
  imageTag,
  type KeyInput,
  keyInputs,
} from '../domain/cache-key.ts';
import { declaredArgs } from '../domain/dockerfile.ts';
import { compareWithPrevious, explanationLines } from './explain.ts';

const { StepKind, StepOutcome, ServiceState } = control;

export const DEFAULT_BUILD_RESOURCES = { cpuMillis: 4000, memoryMib: 4096 } as const;
export const DEFAULT_BUILD_TIMEOUT_SECONDS = 1800;

export interface BuildLockPort {
  acquire(key: string, options: AcquireOptions): Promise<{ lock: HeldLock; waited: boolean }>;
}

export interface GitBuildDeps {
  git: GitClient;
  builder: Builder;
  registry: RegistryClient;
  /** host:port of the mirror registry. */
  mirrorRegistry: string;
  builds: BuildStore;
  locks: BuildLockPort;
  /** Scratch space: each job clones into a directory of its own here, removed afterwards. */
  workDir: string;
  /** Keyed digests of secret ARG values for the cache key (Secrets.fingerprint). */
  fingerprint: Fingerprint;
  now?: () => Date;
}

export function applicationOf(service: control.Service | undefined): control.ApplicationSource | undefined {
  const source = service?.source;
  if (source?.$case === 'application') return source.value;
  if (source?.$case === 'job' && source.value.from?.$case === 'application') return source.value.from.value;
  return undefined;
}

const failed = (message: string, state: control.ServiceState = ServiceState.SERVICE_STATE_BUILD_ERROR) =>
  bus.JobFinished.fromPartial({ succeeded: false, state, message });

/** Keeps one step open at a time and closes it with an outcome. */
class Steps {
  #open: { kind: control.StepKind; startedAt: Date } | undefined;
  readonly #ctx: JobContext;
  readonly #now: () => Date;
  readonly #redact: Redact;

  constructor(ctx: JobContext, now: () => Date, redact: Redact) {
    this.#ctx = ctx;
    this.#now = now;
    this.#redact = redact;
  }

  get current(): control.StepKind | undefined {
    return this.#open?.kind;
  }

  async start(kind: control.StepKind, message: string): Promise<void> {
    this.#open = { kind, startedAt: this.#now() };
    const text = this.#redact(message);
    this.#ctx.output(text, kind);
    await this.#ctx.stepStarted(kind, text);
  }

  async finish(outcome: control.StepOutcome, message: string): Promise<void> {
    const open = this.#open;
    if (open === undefined) return;
    this.#open = undefined;
    const text = this.#redact(message);
    this.#ctx.output(text, open.kind);
    await this.#ctx.stepFinished(
      control.Step.fromPartial({
        kind: open.kind,
        startedAt: open.startedAt,
        finishedAt: this.#now(),
        outcome,
        message: text,
      }),
    );
  }
}

/** The image the mirror holds under `ref`, if complete (its manifest and every blob it names). */
export async function inMirror(
  registry: RegistryClient,
  ref: ImageReference,
  signal: AbortSignal,
): Promise<string | undefined> {
  let manifest: Awaited<ReturnType<RegistryClient['getManifest']>>;
  try {
    manifest = await registry.getManifest(ref, signal);
  } catch (e) {
    if (e instanceof DomainError && e.code === 'NOT_FOUND') return undefined;
    throw e;
  }
  const repo = { registry: ref.registry, repository: ref.repository };
  for (const blob of manifest.parsed.blobs) {
    if (!(await registry.blobExists(repo, blob.digest, signal))) return undefined;
  }
  for (const child of manifest.parsed.manifests) {
    if ((await registry.headManifest({ ...repo, tag: undefined, digest: child.digest }, signal)) === undefined) {
      return undefined;
    }
  }
  return manifest.digest;
}

/** The commit a GIT build would build and the Dockerfile at it, read without checking the tree out. */
export interface FetchedDockerfile {
  ref: GitRef;
  fetched: FetchedCommit;
  commit: string;
  /** The build context inside the repository ("" for the root). */
  rootPath: string;
  dockerfilePath: string;
  dockerfile: Buffer;
}

/** GIT_CLONE's work: fetch `ref` (a branch resolved to its head now) and read the Dockerfile at it. */
export async function fetchDockerfile(
  git: GitClient,
  source: control.ApplicationSource,
  ref: GitRef,
  dir: string,
  signal: AbortSignal,
  onLine: (line: string) => void,
): Promise<FetchedDockerfile> {
  const fetched = await git.fetch({ url: source.gitUrl, ref, dir, signal, onLine });
  const rootPath = posix.normalize(source.rootPath || '.').replace(/^\.$|^\/+|\/+$/g, '');
  const dockerfilePath = source.dockerfilePath || 'Dockerfile';
  const dockerfile = await git.readFile(fetched, source.gitUrl, posix.join(rootPath || '.', dockerfilePath), signal);
  if (!dockerfile.found) throw new BuildFailure('failed', `Dockerfile: ${dockerfile.problem}`);
  return { ref, fetched, commit: fetched.commit, rootPath, dockerfilePath, dockerfile: dockerfile.content };
}

/** Hides what a build job must never show: the service's secret values and the repository's credentials. */
export function jobRedactor(git: GitClient, service: control.Service | undefined): Redact {
  const source = applicationOf(service);
  return redactor([
    ...(service?.envVars ?? []).filter((e) => e.secret).map((e) => e.value),
    ...(source === undefined ? [] : git.secretsFor(source.gitUrl)),
  ]);
}

/** The cache key of a build and the mirror image it names (one repository per git repository). Pure. */
export function keyFor(
  project: string,
  service: control.Service,
  source: control.ApplicationSource,
  at: FetchedDockerfile,
  mirrorRegistry: string,
  fingerprint: Fingerprint,
): { args: BuildArgValue[]; inputs: KeyInput[]; key: string; destination: ImageReference } {
  const content = at.dockerfile.toString('utf8');
  const declared = new Set(declaredArgs(content));
  const args: BuildArgValue[] = service.envVars
    .filter((e) => declared.has(e.key))
    .map((e) => ({ name: e.key, value: e.value, secret: e.secret }));
  const inputs = keyInputs(
    {
      rootPath: at.rootPath,
      dockerfilePath: at.dockerfilePath,
      dockerfileContent: content,
      target: source.buildTarget,
      args,
      commit: at.commit,
    },
    fingerprint,
  );
  const key = cacheKey(inputs);
  const destination: ImageReference = {
    registry: mirrorRegistry,
    repository: buildRepository(project, source.gitUrl),
    tag: imageTag(key),
    digest: undefined,
  };
  return { args, inputs, key, destination };
}

const seconds = (from: Date, to: Date) => ((to.getTime() - from.getTime()) / 1000).toFixed(1);

export async function gitBuildJob(deps: GitBuildDeps, job: bus.BuildJob, ctx: JobContext): Promise<bus.JobFinished> {
  const now = deps.now ?? (() => new Date());
  const service = job.service;
  const source = applicationOf(service);
  if (service === undefined || source === undefined) {
    return failed('a GIT build needs an APPLICATION service or a job built from git');
  }
  const redact = jobRedactor(deps.git, service);
  const say = (line: string, step?: control.StepKind) => ctx.output(redact(line), step);
  const steps = new Steps(ctx, now, redact);
  const timeoutSeconds = source.buildTimeoutSeconds || DEFAULT_BUILD_TIMEOUT_SECONDS;
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new Error('build timeout')), timeoutSeconds * 1000);
  const signal = AbortSignal.any([ctx.signal, deadline.signal]);
  const resources = {
    cpuMillis: service.buildResources?.cpuMillis || DEFAULT_BUILD_RESOURCES.cpuMillis,
    memoryMib: service.buildResources?.memoryMib || DEFAULT_BUILD_RESOURCES.memoryMib,
  };
  const buildId = await deps.builds.start({
    jobId: job.jobId,
    deploymentId: job.deploymentId,
    environmentId: job.environmentId,
    serviceId: service.id,
    attempt: job.attempt,
    gitUrl: source.gitUrl,
  });
  await mkdir(deps.workDir, { recursive: true });
  const dir = await mkdtemp(join(deps.workDir, 'job-'));
  let phase = 'starting';
  let commit = '';
  let key = '';

  // The URL as shown: never a username (it may be a token) nor anything unparsable.
  let shownUrl = 'the repository';
  try {
    shownUrl = parseGitUrl(source.gitUrl).url;
  } catch {
    // Reported below, when the fetch refuses it.
  }

  try {
    const url = shownUrl;

    // --- GIT_CLONE ---------------------------------------------------------------------------
    phase = 'cloning';
    const ref = gitRefFor(job.version, source);
    await steps.start(StepKind.STEP_KIND_GIT_CLONE, `cloning ${url} at ${describeRef(ref)}`);
    const at = await fetchDockerfile(deps.git, source, ref, dir, signal, (line) =>
      say(line, StepKind.STEP_KIND_GIT_CLONE),
    );
    const { fetched } = at;
    commit = at.commit;
    await steps.finish(
      StepOutcome.STEP_OUTCOME_SUCCESS,
      ref.kind === 'commit' ? `commit ${commit}` : `${describeRef(ref)} is at commit ${commit}`,
    );

    // --- BUILD: key, explanation, cache ------------------------------------------------------
    phase = 'computing the cache key';
    const keyed = keyFor(job.project, service, source, at, deps.mirrorRegistry, deps.fingerprint);
    const { args, inputs, destination } = keyed;
    key = keyed.key;
    const target = formatReference(destination);
    await steps.start(StepKind.STEP_KIND_BUILD, `cache key ${key}: ${target}`);
    await deps.builds.recordKey({ key, repository: destination.repository, tag: destination.tag!, inputs });
    await deps.builds.keyed(buildId, commit, key);
    const explained = await compareWithPrevious(
      deps.builds,
      { id: buildId, serviceId: service.id, deploymentId: job.deploymentId, startedAt: now() },
      inputs,
    );
    for (const line of explanationLines(key, explained.inputs, explained.previousCacheKey)) {
      say(line, StepKind.STEP_KIND_BUILD);
    }

    const hit = async (how: string): Promise<bus.JobFinished> => {
      const digest = await inMirror(deps.registry, destination, signal);
      if (digest === undefined) throw new Error('image vanished from the mirror');
      const image = `${target}@${digest}`;
      const message = `cache hit: key ${key} — ${how} ${image}`;
      await steps.finish(StepOutcome.STEP_OUTCOME_CACHE_HIT, message);
      await deps.builds.finish(buildId, { status: 'SUCCEEDED', message: redact(message), image, cacheHit: true });
      metrics.buildCache.inc({ result: 'hit' });
      return bus.JobFinished.fromPartial({
        succeeded: true,
        message: redact(message),
        image,
        cacheKey: key,
        resolvedVersion: `commit:${commit}`,
      });
    };

    phase = 'checking the mirror';
    if (!job.forceBuild && (await inMirror(deps.registry, destination, signal)) !== undefined) {
      return await hit('the mirror already has');
    }
    say(
      job.forceBuild ? 'force build: the cache is bypassed' : 'no complete image for this key in the mirror: building',
      StepKind.STEP_KIND_BUILD,
    );

    phase = 'waiting for an identical build';
    const { lock, waited } = await deps.locks.acquire(key, {
      holder: `job ${job.jobId}`,
      signal,
      onWait: (holder) =>
        say(`an identical build (same key) is in flight (${holder}): waiting for it`, StepKind.STEP_KIND_BUILD),
    });
    try {
      // Whoever held the key may have just pushed it; with force, only an identical build of this
      // moment counts, not an older image.
      if ((waited || !job.forceBuild) && (await inMirror(deps.registry, destination, signal)) !== undefined) {
        return await hit(waited ? 'built by the identical build just waited for:' : 'the mirror already has');
      }
      phase = 'checking out';
      const workTree = join(dir, 'src');
      say(`checking out ${commit}`, StepKind.STEP_KIND_BUILD);
      await deps.git.checkout(fetched, source.gitUrl, workTree, {
        signal,
        onLine: (line) => say(line, StepKind.STEP_KIND_BUILD),
      });
      // The builder reads exactly the Dockerfile the key hashed, never a file a symlink points at.
      const dockerfileCopy = join(dir, 'Dockerfile.stageline');
      await writeFile(dockerfileCopy, at.dockerfile);
      phase = 'building';
      say(
        `${deps.builder.name}: building with ${resources.cpuMillis / 1000} CPU and ${resources.memoryMib} MiB` +
          (args.length > 0 ? `, build args ${args.map((a) => a.name).join(', ')}` : ''),
        StepKind.STEP_KIND_BUILD,
      );
      const buildStarted = now();
      const built = await deps.builder.build({
        contextDir: join(workTree, at.rootPath),
        dockerfile: dockerfileCopy,
        target: source.buildTarget,
        args,
        image: target,
        resources,
        signal,
        onLine: (line) => say(line, StepKind.STEP_KIND_BUILD),
      });
      const image = `${target}@${built.digest}`;
      const message = `built and pushed ${image} in ${seconds(buildStarted, now())} s (key ${key})`;
      await steps.finish(StepOutcome.STEP_OUTCOME_SUCCESS, message);
      await deps.builds.finish(buildId, { status: 'SUCCEEDED', message: redact(message), image });
      metrics.buildCache.inc({ result: 'miss' });
      return bus.JobFinished.fromPartial({
        succeeded: true,
        message: redact(message),
        image,
        cacheKey: key,
        resolvedVersion: `commit:${commit}`,
      });
    } finally {
      await lock.release();
    }
  } catch (error) {
    if (ctx.signal.aborted && isWorkerStopping(ctx.signal.reason)) {
      // This process is shutting down, not the run: the worker hands the job to another process.
      await deps.builds
        .finish(buildId, { status: 'CANCELED', message: 'worker stopping: handed back' })
        .catch(() => undefined);
      throw ctx.signal.reason;
    }
    if (ctx.signal.aborted) {
      const message = `canceled while ${phase}`;
      await steps.finish(StepOutcome.STEP_OUTCOME_CANCELED, message);
      await deps.builds.finish(buildId, { status: 'CANCELED', message }).catch(() => undefined);
      return failed(message, ServiceState.SERVICE_STATE_CANCELED);
    }
    let message: string;
    if (deadline.signal.aborted) {
      message = `the build exceeded its time limit of ${timeoutSeconds} s (build_timeout_seconds) while ${phase}`;
    } else if (error instanceof BuildFailure || error instanceof GitError || error instanceof DomainError) {
      message = error.message;
    } else {
      ctx.log.error({ err: error }, 'git build failed unexpectedly');
      message = `build failed while ${phase}: ${error instanceof Error ? error.message : String(error)}`;
    }
    message = redact(message);
    if (steps.current === undefined) await steps.start(StepKind.STEP_KIND_GIT_CLONE, `cloning ${shownUrl}`);
    await steps.finish(StepOutcome.STEP_OUTCOME_ERROR, message);
    await deps.builds.finish(buildId, { status: 'FAILED', message }).catch(() => undefined);
    const result = failed(message);
    if (commit !== '') result.resolvedVersion = `commit:${commit}`;
    if (key !== '') result.cacheKey = key;
    return result;
  } finally {
    clearTimeout(timer);
    await rm(dir, { recursive: true, force: true });
  }
}
