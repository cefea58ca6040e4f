// gRPC face of the running status and live logs (stageline.deploy.v1.RuntimeService): wiring only.
import type * as grpc from '@grpc/grpc-js';
import { type GrpcServiceRegistration, serverStream, unary } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { deploy } from '@stageline/proto';
import type { RuntimeWatch, ServiceRuntimeView } from '../../app/runtime-status.ts';
import type { RuntimeState } from '../../domain/runtime-status.ts';

const STATES: Record<RuntimeState, deploy.RuntimeState> = {
  RUNNING: deploy.RuntimeState.RUNTIME_STATE_RUNNING,
  WARNING: deploy.RuntimeState.RUNTIME_STATE_WARNING,
  ERROR: deploy.RuntimeState.RUNTIME_STATE_ERROR,
  STOPPED: deploy.RuntimeState.RUNTIME_STATE_STOPPED,
  COMPLETED: deploy.RuntimeState.RUNTIME_STATE_COMPLETED,
  UNKNOWN: deploy.RuntimeState.RUNTIME_STATE_UNKNOWN,
};

export function toProtoServiceRuntime(v: ServiceRuntimeView): deploy.ServiceRuntime {
  return deploy.ServiceRuntime.fromPartial({
    serviceId: v.serviceId,
    serviceName: v.serviceName,
    kind: v.kind,
    state: STATES[v.state],
    message: v.message,
    revision: v.revision,
    releaseStatus: v.releaseStatus,
    runtime: v.runtime,
    ...(v.observedAt !== undefined ? { observedAt: v.observedAt } : {}),
    instances: v.instances.map((i) => ({
      name: i.name,
      state: i.state,
      ready: i.ready,
      restarts: i.restarts,
      ...(i.startedAt !== undefined ? { startedAt: i.startedAt } : {}),
      hasLastExit: i.lastExit !== undefined,
      lastExitCode: i.lastExit?.code ?? 0,
      lastExitReason: i.lastExit?.reason ?? '',
    })),
  });
}

export function runtimeService(watch: RuntimeWatch, log: Logger): GrpcServiceRegistration {
  const implementation: deploy.RuntimeServiceServer = {
    getRuntimeStatus: unary(log, async (req) =>
      deploy.GetRuntimeStatusResponse.fromPartial({
        services: (await watch.status(req.environmentId)).map(toProtoServiceRuntime),
      }),
    ),
    streamServiceLogs: serverStream(log, async (req, call) => {
      const stop = new AbortController();
      call.on('cancelled', () => stop.abort());
      call.on('close', () => stop.abort());
      await watch.logs(
        {
          environmentId: req.environmentId,
          serviceId: req.serviceId,
          follow: req.follow,
          tailLines: req.tailLines,
          ...(req.since !== undefined ? { since: req.since } : {}),
        },
        (line) => {
          if (stop.signal.aborted) return;
          call.write({
            line: {
              serviceId: req.serviceId,
              instance: line.instance,
              ...(line.timestamp !== undefined ? { timestamp: line.timestamp } : {}),
              message: line.message,
              stream: line.stream,
            },
          });
        },
        stop.signal,
      );
    }),
  };
  return {
    definition: deploy.RuntimeServiceService,
    implementation: implementation as grpc.UntypedServiceImplementation,
    // Reaches users through control's public API (DeploymentService/GetRuntimeStatus, StreamServiceLogs).
    access: { services: ['control'] },
  };
}
