// gRPC face of the deploy service (stageline.deploy.v1.ReleaseService). Skeleton: every method answers
// UNIMPLEMENTED until releases land; real handlers go here, wrapped with `unary(...)`.
import { type GrpcServiceRegistration, notImplemented } from '@stageline/grpc';
import { deploy } from '@stageline/proto';

export function releaseService(): GrpcServiceRegistration {
  return { definition: deploy.ReleaseServiceService, implementation: notImplemented(deploy.ReleaseServiceService) };
}
