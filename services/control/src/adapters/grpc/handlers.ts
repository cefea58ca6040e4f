import type * as grpc from '@grpc/grpc-js';
import { type GrpcServiceRegistration, unary } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { control, snapshot } from '@stageline/proto';
import type { ControlApp } from '../../app/control-app.ts';

// gRPC → use cases: nothing but wiring. Errors are mapped by @stageline/grpc's `unary`.

export function controlServices(app: ControlApp, log: Logger): GrpcServiceRegistration[] {
  const environments: control.EnvironmentServiceServer = {
    createEnvironment: unary(log, (req) => app.createEnvironment(req)),
    getEnvironment: unary(log, (req) => app.getEnvironment(req)),
    listEnvironments: unary(log, (req) => app.listEnvironments(req)),
    updateEnvironment: unary(log, (req) => app.updateEnvironment(req)),
    cloneEnvironment: unary(log, (req) => app.cloneEnvironment(req)),
    addService: unary(log, (req) => app.addService(req)),
    updateService: unary(log, (req) => app.updateService(req)),
    removeService: unary(log, (req) => app.removeService(req)),
    listServices: unary(log, (req) => app.listServices(req)),
  };
  const pipelines: control.PipelineServiceServer = {
    getPipeline: unary(log, (req) => app.getPipeline(req)),
    createStage: unary(log, (req) => app.createStage(req)),
    updateStage: unary(log, (req) => app.updateStage(req)),
    moveStage: unary(log, (req) => app.moveStage(req)),
    deleteStage: unary(log, (req) => app.deleteStage(req)),
    moveService: unary(log, (req) => app.moveService(req)),
    setServiceSkipped: unary(log, (req) => app.setServiceSkipped(req)),
  };
  return [
    {
      definition: control.EnvironmentServiceService,
      implementation: environments as grpc.UntypedServiceImplementation,
    },
    { definition: control.PipelineServiceService, implementation: pipelines as grpc.UntypedServiceImplementation },
    {
      definition: snapshot.SnapshotServiceService,
      implementation: {
        getEnvironmentSnapshot: unary(log, (req: snapshot.GetEnvironmentSnapshotRequest) =>
          app.snapshot(req.environmentId),
        ),
      } as grpc.UntypedServiceImplementation,
    },
  ];
}
