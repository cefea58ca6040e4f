// What a build or mirror job would do, without doing it (PlanDeployment's dry run, through
// BuildService/PredictBuilds): the same naming and cache key as the jobs themselves, so a predicted
// cache hit is the cache hit the run will have — unless the mirror or the branch changes in between.
//
//   MIRROR  the destination tag already resolves to the source's digest → cache hit.
//   GIT     the branch is resolved and the Dockerfile read (a shallow fetch, no checkout, no build);
//           the key's image complete in the mirror → cache hit; otherwise the inputs that differ
//           from the service's previous build say why it would build.
//
// Nothing is recorded and nothing is pushed. Every message goes through the job's redactor.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DomainError } from '@stageline/errors';
import { type build, bus } from '@stageline/proto';
import { BuildFailure } from '../adapters/builder/builder.ts';
import type { BuildStore } from '../adapters/db/build-store.ts';
import { type GitClient, GitError, gitRefFor } from '../adapters/git/git.ts';
import type { RegistryClient } from '../adapters/registry/client.ts';
import { limiter } from '../adapters/registry/mirror.ts';
import { formatReference } from '../adapters/registry/reference.ts';
import { explainInputs, type Fingerprint } from '../domain/cache-key.ts';
import { applicationOf, fetchDockerfile, inMirror, jobRedactor, keyFor } from './git-build.ts';
import { planMirror } from './mirror-plan.ts';

export interface PredictDeps {
  /** Opens the job's sealed secret env values (main wires packages/secrets); absent: they are in clear. */
  open?: (job: bus.BuildJob) => bus.BuildJob;
  git: GitClient;
  registry: RegistryClient;
  mirrorRegistry: string;
  builds: BuildStore;
  /** Scratch space for the shallow fetches; each prediction's directory is removed afterwards. */
  workDir: string;
  /** Keyed digests of secret ARG values, as the build itself makes them (Secrets.fingerprint). */
  fingerprint: Fingerprint;
}

/** Jobs predicted at once: each GIT prediction is a fetch. */
const CONCURRENCY = 4;
/** The longest one job's prediction may take. */
const JOB_TIMEOUT_MS = 20_000;
/** A build never gets a previous build with this id: "compare with the latest". */
const NO_BUILD = '00000000-0000-0000-0000-000000000000';

export async function predictBuilds(
  deps: PredictDeps,
  jobs: readonly bus.BuildJob[],
  signal: AbortSignal,
): Promise<build.BuildPrediction[]> {
  const limit = limiter(CONCURRENCY);
  return Promise.all(
    jobs.map((sealed) =>
      limit(async () => {
        let job: bus.BuildJob;
        try {
          job = deps.open?.(sealed) ?? sealed;
        } catch (e) {
          return prediction(sealed, { detail: `would fail: ${e instanceof Error ? e.message : String(e)}` });
        }
        return predictOne(deps, job, signal);
      }),
    ),
  );
}

const prediction = (job: bus.BuildJob, fields: Partial<build.BuildPrediction>): build.BuildPrediction => ({
  jobId: job.jobId,
  cacheHit: false,
  cacheKey: '',
  image: '',
  detail: '',
  resolvedVersion: '',
  ...fields,
});

export async function predictOne(
  deps: PredictDeps,
  job: bus.BuildJob,
  signal: AbortSignal,
): Promise<build.BuildPrediction> {
  const redact = jobRedactor(deps.git, job.service);
  // One slow registry or git server holds up only its own job.
  const bounded = AbortSignal.any([signal, AbortSignal.timeout(JOB_TIMEOUT_MS)]);
  try {
    const predicted =
      job.kind === bus.BuildKind.BUILD_KIND_GIT
        ? await predictGit(deps, job, bounded)
        : await predictMirror(deps, job, bounded);
    return { ...predicted, detail: redact(predicted.detail) };
  } catch (error) {
    if (bounded.aborted) return prediction(job, { detail: 'no prediction: it took too long' });
    const known = error instanceof DomainError || error instanceof GitError || error instanceof BuildFailure;
    const message = error instanceof Error ? error.message : String(error);
    return prediction(job, { detail: redact(known ? `would fail: ${message}` : `no prediction: ${message}`) });
  }
}

async function predictMirror(
  deps: PredictDeps,
  job: bus.BuildJob,
  signal: AbortSignal,
): Promise<build.BuildPrediction> {
  const plan = planMirror(job, deps.mirrorRegistry);
  const source = formatReference(plan.source);
  const head = await deps.registry.headManifest(plan.source, signal);
  if (head === undefined) return prediction(job, { detail: `would fail: image ${source} not found in its registry` });
  if (job.forceBuild) return prediction(job, { detail: `force build: would copy ${source} (${head.digest}) again` });
  const mirrored = await deps.registry.headManifest(plan.destination, signal);
  const destination = formatReference(plan.destination);
  if (mirrored?.digest === head.digest) {
    return prediction(job, {
      cacheHit: true,
      image: `${destination}@${head.digest}`,
      detail: `the mirror already has ${destination} at ${head.digest}`,
    });
  }
  return prediction(job, {
    detail:
      mirrored === undefined
        ? `would copy ${source} (${head.digest}) to ${destination}`
        : `would copy ${source}: it moved to ${head.digest} (the mirror has ${mirrored.digest})`,
  });
}

async function predictGit(deps: PredictDeps, job: bus.BuildJob, signal: AbortSignal): Promise<build.BuildPrediction> {
  const service = job.service;
  const source = applicationOf(service);
  if (service === undefined || source === undefined) {
    return prediction(job, { detail: 'would fail: a GIT build needs an APPLICATION service or a job built from git' });
  }
  await mkdir(deps.workDir, { recursive: true });
  const dir = await mkdtemp(join(deps.workDir, 'predict-'));
  try {
    const ref = gitRefFor(job.version, source);
    const at = await fetchDockerfile(deps.git, source, ref, dir, signal, () => undefined);
    const { inputs, key, destination } = keyFor(
      job.project,
      service,
      source,
      at,
      deps.mirrorRegistry,
      deps.fingerprint,
    );
    const target = formatReference(destination);
    const resolvedVersion = `commit:${at.commit}`;
    if (job.forceBuild) {
      return prediction(job, { cacheKey: key, resolvedVersion, detail: `force build: would build ${target}` });
    }
    const digest = await inMirror(deps.registry, destination, signal);
    if (digest !== undefined) {
      return prediction(job, {
        cacheHit: true,
        cacheKey: key,
        resolvedVersion,
        image: `${target}@${digest}`,
        detail: `key ${key}: the mirror already has ${target}@${digest}`,
      });
    }
    const previous = await deps.builds.previousFor(service.id, {
      id: NO_BUILD,
      deploymentId: job.deploymentId,
      startedAt: new Date(),
    });
    const previousKey = previous?.cacheKey ? await deps.builds.key(previous.cacheKey) : undefined;
    let why: string;
    if (previousKey === undefined) {
      why = 'no earlier build of this service';
    } else if (previousKey.key === key) {
      why = 'same inputs as its previous build, but that image is no longer complete in the mirror';
    } else {
      const changed = explainInputs(inputs, previousKey.inputs).filter((i) => i.changed);
      why = changed.map((i) => i.detail).join('; ');
    }
    return prediction(job, { cacheKey: key, resolvedVersion, detail: `key ${key}: would build: ${why}` });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
