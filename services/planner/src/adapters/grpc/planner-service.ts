// gRPC face of the planner (stageline.planner.v1.PlannerService): control's action and run RPCs
// arrive here. Submit takes the same path as a request consumed from the bus.
import type * as grpc from '@grpc/grpc-js';
import { type GrpcServiceRegistration, unary } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { bus, planner } from '@stageline/proto';
import type { PlannerApp } from '../../app/planner-app.ts';

export function plannerService(app: PlannerApp, log: Logger): GrpcServiceRegistration {
  const implementation: planner.PlannerServiceServer = {
    submit: unary(log, async (req) => ({
      deployment: await app.submit(req.request ?? bus.ActionRequested.fromPartial({})),
    })),
    plan: unary(log, async (req) => ({
      deployment: await app.plan(req.request ?? bus.ActionRequested.fromPartial({})),
    })),
    getDeployment: unary(log, (req) => app.getRun(req.deploymentId)),
    listDeployments: unary(log, (req) => app.listDeployments(req)),
  };
  return {
    definition: planner.PlannerServiceService,
    implementation: implementation as unknown as grpc.UntypedServiceImplementation,
    // Control is the planner's only caller: users act through control's public API.
    access: { services: ['control'] },
  };
}
