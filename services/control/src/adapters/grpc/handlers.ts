import type * as grpc from '@grpc/grpc-js';
import { type GrpcServiceRegistration, unary } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { control, snapshot } from '@stageline/proto';
import type { AutoDeployApp } from '../../app/auto-deploy-app.ts';
import type { ControlApp } from '../../app/control-app.ts';
import { actorOf, METHOD_ROLES } from '../../domain/access.ts';
import type { Scope } from './access.ts';

// gRPC → use cases: nothing but wiring, and each caller's project scope. Roles were checked by the
// server before any handler runs; errors are mapped by @stageline/grpc's `unary`.

const roles = (service: string) => ({ roles: METHOD_ROLES[service] ?? {} });

export function controlServices(
  app: ControlApp,
  scope: Scope,
  log: Logger,
  autoDeploy?: AutoDeployApp,
): GrpcServiceRegistration[] {
  // Each use case runs as the caller: every change it makes names them (EnvironmentEvent.actor).
  const inEnv = <R extends { environmentId: string }, T>(f: (req: R, as: ControlApp) => Promise<T>) =>
    unary(log, async (req: R, call: object) => {
      const caller = await scope.environment(call, req.environmentId);
      return f(req, app.as(actorOf(caller)));
    });
  const environments: control.EnvironmentServiceServer = {
    createEnvironment: unary(log, (req, call) =>
      app.as(actorOf(scope.project(call, req.project))).createEnvironment(req),
    ),
    getEnvironment: inEnv((req) => app.getEnvironment(req)),
    listEnvironments: unary(log, (req, call) => app.listEnvironments(req, scope.visible(call, req.project))),
    updateEnvironment: inEnv((req, as) => as.updateEnvironment(req)),
    cloneEnvironment: unary(log, async (req, call) => {
      const caller = await scope.environment(call, req.sourceEnvironmentId, 'source_environment_id');
      return app.as(actorOf(caller)).cloneEnvironment(req);
    }),
    addService: inEnv((req, as) => as.addService(req)),
    updateService: inEnv((req, as) => as.updateService(req)),
    removeService: inEnv((req, as) => as.removeService(req)),
    listServices: inEnv((req) => app.listServices(req)),
    listKubeContexts: unary(log, async () => ({ contexts: [...app.kubeContexts()] })),
    rotateWebhookSecret: inEnv(async (req) => {
      if (autoDeploy === undefined) throw new Error('auto-deploy is not wired');
      return autoDeploy.rotateWebhookSecret(req.environmentId);
    }),
  };
  const pipelines: control.PipelineServiceServer = {
    getPipeline: inEnv((req) => app.getPipeline(req)),
    createStage: inEnv((req, as) => as.createStage(req)),
    updateStage: inEnv((req, as) => as.updateStage(req)),
    moveStage: inEnv((req, as) => as.moveStage(req)),
    deleteStage: inEnv((req, as) => as.deleteStage(req)),
    moveService: inEnv((req, as) => as.moveService(req)),
    setServiceSkipped: inEnv((req, as) => as.setServiceSkipped(req)),
  };
  return [
    {
      definition: control.EnvironmentServiceService,
      implementation: environments as grpc.UntypedServiceImplementation,
      access: roles('stageline.control.v1.EnvironmentService'),
    },
    {
      definition: control.PipelineServiceService,
      implementation: pipelines as grpc.UntypedServiceImplementation,
      access: roles('stageline.control.v1.PipelineService'),
    },
    {
      definition: snapshot.SnapshotServiceService,
      implementation: {
        getEnvironmentSnapshot: unary(log, (req: snapshot.GetEnvironmentSnapshotRequest) =>
          app.snapshot(req.environmentId),
        ),
      } as grpc.UntypedServiceImplementation,
      // Secret values in clear: the planner alone, never a token, whatever its role.
      access: { services: ['planner'] },
    },
  ];
}
