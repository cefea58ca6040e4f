// gRPC face of the build service (stageline.build.v1.BuildService): a build by id, and the explanation
// of a service's build — its cache key's inputs and what changed since the service's previous build —
// and the dry run of jobs a plan would dispatch (PredictBuilds).

import { failedPrecondition, invalidArgument, notFound } from '@stageline/errors';
import type { GrpcServiceRegistration } from '@stageline/grpc';
import { unary } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { build, bus } from '@stageline/proto';
import { explainBuild } from '../../app/explain.ts';
import { type PredictDeps, predictBuilds } from '../../app/predict.ts';
import type { BuildRecord, BuildStore } from '../db/build-store.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ID = /^[A-Za-z0-9_-]{1,128}$/;

export interface BuildServiceDeps {
  builds: BuildStore;
  log: Logger;
  /** Without it, PredictBuilds answers UNIMPLEMENTED-like FAILED_PRECONDITION. */
  predict?: PredictDeps;
}

/** Jobs one PredictBuilds call may ask about: more than any environment has services. */
const MAX_PREDICTIONS = 1000;
/** A plan waits this long at most; jobs not predicted by then say so. */
const PREDICT_TIMEOUT_MS = 60_000;

function view(r: BuildRecord): build.Build {
  return build.Build.fromPartial({
    id: r.id,
    serviceId: r.serviceId,
    deploymentId: r.deploymentId,
    cacheKey: r.cacheKey ?? '',
    image: r.image,
    cacheHit: r.cacheHit,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt ?? undefined,
    message: r.message,
  });
}

export function buildService(deps: BuildServiceDeps): GrpcServiceRegistration {
  const implementation: build.BuildServiceServer = {
    getBuild: unary(deps.log, async (request: build.GetBuildRequest) => {
      if (!UUID.test(request.buildId)) throw notFound('build', request.buildId, 'build_id');
      const found = await deps.builds.get(request.buildId);
      if (found === undefined) throw notFound('build', request.buildId, 'build_id');
      return build.GetBuildResponse.fromPartial({ build: view(found) });
    }),
    explainBuild: unary(deps.log, async (request: build.ExplainBuildRequest) => {
      if (!ID.test(request.serviceId)) throw invalidArgument('service_id', 'must be a service id');
      if (request.deploymentId !== undefined && !ID.test(request.deploymentId)) {
        throw invalidArgument('deployment_id', 'must be a deployment id');
      }
      const explained = await explainBuild(deps.builds, request.serviceId, request.deploymentId);
      return build.ExplainBuildResponse.fromPartial({
        cacheKey: explained.cacheKey,
        image: explained.image,
        previousCacheKey: explained.previousCacheKey,
        inputs: explained.inputs.map((i) => ({ name: i.name, digest: i.digest, changed: i.changed, detail: i.detail })),
      });
    }),
    predictBuilds: unary(deps.log, async (request: build.PredictBuildsRequest, call) => {
      const predict = deps.predict;
      if (predict === undefined) throw failedPrecondition('this build service cannot predict builds');
      if (request.jobs.length > MAX_PREDICTIONS) {
        throw invalidArgument('jobs', `at most ${MAX_PREDICTIONS} jobs per call, got ${request.jobs.length}`);
      }
      request.jobs.forEach((job, i) => {
        if (!ID.test(job.jobId)) throw invalidArgument(`jobs[${i}].job_id`, 'must be a job id');
        if (job.kind !== bus.BuildKind.BUILD_KIND_GIT && job.kind !== bus.BuildKind.BUILD_KIND_MIRROR) {
          throw invalidArgument(`jobs[${i}].kind`, 'must be BUILD_KIND_GIT or BUILD_KIND_MIRROR');
        }
        if (job.service === undefined) throw invalidArgument(`jobs[${i}].service`, 'is required');
      });
      // Ends early when the caller goes away or the time is up.
      const gone = new AbortController();
      call.on('cancelled', () => gone.abort());
      const signal = AbortSignal.any([gone.signal, AbortSignal.timeout(PREDICT_TIMEOUT_MS)]);
      return build.PredictBuildsResponse.fromPartial({
        predictions: await predictBuilds(predict, request.jobs, signal),
      });
    }),
  };
  // Plans ask for predictions (the planner); users read builds through control's public API.
  return { definition: build.BuildServiceService, implementation, access: { services: ['planner', 'control'] } };
}
