// gRPC face of the build service (stageline.build.v1.BuildService). Skeleton: every method answers
// UNIMPLEMENTED until builds and the cache land; real handlers go here, wrapped with `unary(...)`.
import { type GrpcServiceRegistration, notImplemented } from '@stageline/grpc';
import { build } from '@stageline/proto';

export function buildService(): GrpcServiceRegistration {
  return { definition: build.BuildServiceService, implementation: notImplemented(build.BuildServiceService) };
}
