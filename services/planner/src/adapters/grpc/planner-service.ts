// gRPC face of the planner (stageline.planner.v1.PlannerService). Skeleton: every method answers
// UNIMPLEMENTED until the queue and the runs land; real handlers go here, wrapped with `unary(...)`.
import { type GrpcServiceRegistration, notImplemented } from '@stageline/grpc';
import { planner } from '@stageline/proto';

export function plannerService(): GrpcServiceRegistration {
  return { definition: planner.PlannerServiceService, implementation: notImplemented(planner.PlannerServiceService) };
}
