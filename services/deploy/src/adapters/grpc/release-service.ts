// gRPC face of the deploy service (stageline.deploy.v1.ReleaseService): wiring only.
import type * as grpc from '@grpc/grpc-js';
import { type GrpcServiceRegistration, unary } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { deploy } from '@stageline/proto';
import { getRelease, listCronRuns, listReleases, type ReleaseQueriesDeps } from '../../app/releases.ts';
import type { Release } from '../../domain/release.ts';

export function toProtoRelease(release: Release): deploy.Release {
  return deploy.Release.fromPartial({
    revision: release.revision,
    image: release.image,
    digest: release.digest,
    configHash: release.configHash,
    deploymentId: release.deploymentId,
    createdAt: release.createdAt,
    status: release.status,
    serviceId: release.serviceId,
    chart: release.chartPath,
    version: release.version,
    message: release.message,
    jobId: release.jobId,
  });
}

export function releaseService(deps: ReleaseQueriesDeps, log: Logger): GrpcServiceRegistration {
  const implementation: deploy.ReleaseServiceServer = {
    listReleases: unary(log, async (req) =>
      deploy.ListReleasesResponse.fromPartial({
        releases: (await listReleases(deps, req.serviceId)).map(toProtoRelease),
      }),
    ),
    listCronRuns: unary(log, async (req) =>
      deploy.ListCronRunsResponse.fromPartial({
        runs: (await listCronRuns(deps, req.serviceId, req.limit)).map((r) => ({
          serviceId: r.serviceId,
          scheduledAt: r.tick,
          startedAt: r.startedAt,
          ...(r.finishedAt !== undefined ? { finishedAt: r.finishedAt } : {}),
          status: r.status,
          exitCode: r.exitCode,
          message: r.message,
          revision: r.revision,
          log: r.log,
        })),
      }),
    ),
    getRelease: unary(log, async (req) =>
      deploy.GetReleaseResponse.fromPartial({
        release: toProtoRelease(await getRelease(deps, req.serviceId, req.revision)),
      }),
    ),
  };
  return {
    definition: deploy.ReleaseServiceService,
    implementation: implementation as grpc.UntypedServiceImplementation,
    // Release history and cron runs reach users through control's public API.
    access: { services: ['control'] },
  };
}
