// gRPC face of the build service (stageline.build.v1.BuildService): a build by id, and the explanation
// of a service's build — its cache key's inputs and what changed since the service's previous build.

import { invalidArgument, notFound } from '@stageline/errors';
import type { GrpcServiceRegistration } from '@stageline/grpc';
import { unary } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { build } from '@stageline/proto';
import { explainBuild } from '../../app/explain.ts';
import type { BuildRecord, BuildStore } from '../db/build-store.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ID = /^[A-Za-z0-9_-]{1,128}$/;

export interface BuildServiceDeps {
  builds: BuildStore;
  log: Logger;
}

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
  };
  return { definition: build.BuildServiceService, implementation };
}
