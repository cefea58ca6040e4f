import type * as grpc from '@grpc/grpc-js';
import type { Bus } from '@stageline/bus';
import { newId } from '@stageline/db';
import { DomainError, invalidArgument, notFound, RetriesExhausted, retrying } from '@stageline/errors';
import { callUnary, domainErrorFromGrpc, type GrpcServiceRegistration, serverStream, unary } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { type build, bus as busv1, control, type deploy, type planner } from '@stageline/proto';
import { actorOf, METHOD_ROLES } from '../../domain/access.ts';
import { type FollowedRun, followRun } from '../../domain/run-events.ts';
import { callerOf, type Scope } from './access.ts';
import { type RuntimeServiceInfo, runtimeHandlers } from './runtime.ts';

/**
 * A planner or build service restarting is retried (the gRPC retry policy) for a few seconds: long
 * enough for a restart, short enough that the client, waiting on us, is told UNAVAILABLE in time.
 */
const BETWEEN_SERVICES = { retry: { withinMs: 8_000 } } as const;

// DeploymentService: every action becomes an ActionRequested handed to the planner over gRPC
// (PlannerService/Submit — the same path as a request consumed from the bus); runs are read back
// from the planner, followed through the run events, and their logs read from the logs stream.

export interface DeploymentDeps {
  planner: planner.PlannerServiceClient;
  /** BuildService, for ExplainBuild (users never reach it directly). */
  build: build.BuildServiceClient;
  /** ReleaseService, for release history and cron runs (users never reach it directly). */
  releases: deploy.ReleaseServiceClient;
  scope: Scope;
  /** The ids of an environment's services (ExplainBuild takes only those). */
  services: (environmentId: string) => Promise<string[]>;
  bus: Bus;
  log: Logger;
  /** RuntimeService, for the running status and live logs (runtime.ts). */
  runtime: deploy.RuntimeServiceClient;
  /** An environment's services with their names and kinds (runtime.ts). */
  serviceInfos: (environmentId: string) => Promise<RuntimeServiceInfo[]>;
}

const TERMINAL: control.DeploymentStatus[] = [
  control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED,
  control.DeploymentStatus.DEPLOYMENT_STATUS_FAILED,
  control.DeploymentStatus.DEPLOYMENT_STATUS_CANCELED,
];
const isTerminal = (d: control.Deployment | undefined) => d !== undefined && TERMINAL.includes(d.status);

export function deploymentService(deps: DeploymentDeps): GrpcServiceRegistration {
  const { log } = deps;

  /**
   * The run's requester is who the server authenticated; a name the client sends is kept only as
   * "on behalf of" it, never as the identity.
   */
  function requesterOf(call: object, claimed: string | undefined): string {
    const actor = actorOf(callerOf(call));
    const onBehalfOf = (claimed ?? '')
      .replace(/[^\x20-\x7e]/g, '')
      .trim()
      .slice(0, 128);
    return onBehalfOf === '' ? actor : `${actor} on behalf of ${onBehalfOf}`;
  }

  async function submit(
    call: object,
    request: Partial<busv1.ActionRequested>,
  ): Promise<{ deployment: control.Deployment }> {
    if (!request.environmentId) throw invalidArgument('environment_id', 'is required');
    await deps.scope.environment(call, request.environmentId);
    const full = busv1.ActionRequested.fromPartial({
      ...request,
      requestId: newId(),
      requester: requesterOf(call, request.requester),
    });
    try {
      const { deployment } = await callUnary(deps.planner, 'submit', { request: full }, BETWEEN_SERVICES);
      return { deployment: deployment! };
    } catch (e) {
      throw domainErrorFromGrpc(e, 'planner');
    }
  }

  const env =
    (action: control.Action) =>
    (req: { environmentId: string; requester: string; forceBuild: boolean }, call: object) =>
      submit(call, { environmentId: req.environmentId, action, requester: req.requester, forceBuild: req.forceBuild });
  const svc =
    (action: control.Action) =>
    (
      req: {
        environmentId: string;
        serviceId: string;
        serviceIds: string[];
        version: string;
        requester: string;
        forceBuild: boolean;
      },
      call: object,
    ) =>
      submit(call, {
        environmentId: req.environmentId,
        action,
        serviceIds: targetsOf(req),
        version: req.version,
        requester: req.requester,
        forceBuild: req.forceBuild,
      });

  /** service_id and service_ids united (the old single field keeps working); at least one. */
  function targetsOf(req: { serviceId?: string; serviceIds: string[] }): string[] {
    const ids = [...new Set([...(req.serviceId ? [req.serviceId] : []), ...req.serviceIds])];
    if (ids.length === 0) throw invalidArgument('service_ids', 'is required: at least one service (or service_id)');
    if (ids.some((id) => id === '')) throw invalidArgument('service_ids', 'must not contain an empty id');
    return ids;
  }

  /** Checks that the service is one of the environment's, and that the caller may see the environment. */
  async function serviceOf(call: object, environmentId: string, serviceId: string): Promise<void> {
    if (environmentId === '') throw invalidArgument('environment_id', 'is required');
    if (serviceId === '') throw invalidArgument('service_id', 'is required');
    await deps.scope.environment(call, environmentId);
    if (!(await deps.services(environmentId)).includes(serviceId)) throw notFound('service', serviceId, 'service_id');
  }

  /** A run, if the caller may see its environment (NOT_FOUND otherwise, as if it did not exist). */
  async function get(call: object, deploymentId: string): Promise<control.Deployment> {
    return (await getRun(call, deploymentId)).run;
  }

  /** A whole run from the planner, with the sequence of the latest run event it includes. */
  async function getRun(call: object, deploymentId: string): Promise<FollowedRun> {
    if (deploymentId === '') throw invalidArgument('deployment_id', 'is required');
    let found: FollowedRun;
    try {
      const answer = await callUnary(deps.planner, 'getDeployment', { deploymentId }, BETWEEN_SERVICES);
      found = { run: answer.deployment!, sequence: answer.eventSequence ?? 0 };
    } catch (e) {
      throw domainErrorFromGrpc(e, 'planner');
    }
    try {
      await deps.scope.environment(call, found.run.environmentId);
    } catch {
      throw notFound('deployment', deploymentId, 'deployment_id');
    }
    return found;
  }

  /**
   * An ephemeral consumer on one stream and subject filter, read in order without acks. While the bus
   * reconnects (NATS restarting) it is tried again for a few seconds; then UNAVAILABLE, never INTERNAL.
   */
  async function reader(stream: string, filter: string, deliver: 'all' | 'last_per_subject') {
    const open = async () => {
      const created = await deps.bus.jsm.consumers.add(stream, {
        filter_subject: filter,
        deliver_policy: deliver as never,
        ack_policy: 'none' as never,
        // Gone on its own if the client disappears without us noticing.
        inactive_threshold: 60_000_000_000,
      });
      return { info: created, consumer: await deps.bus.js.consumers.get(stream, created.name) };
    };
    const { info, consumer } = await retrying(open, {
      what: `reading ${stream}`,
      policy: { baseMs: 100, maxMs: 1_000, deadlineMs: 10_000 },
      // The server refusing (an API error, with a code) is an answer; a lost connection is not.
      isTransient: (e) => typeof (e as { code?: unknown }).code !== 'number',
    }).catch((e: unknown) => {
      throw new DomainError('UNAVAILABLE', `the bus is unavailable: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e instanceof RetriesExhausted ? e.cause : e,
      });
    });
    return {
      pending: info.num_pending,
      consumer,
      close: () => deps.bus.jsm.consumers.delete(stream, info.name).catch(() => false),
    };
  }

  const A = control.Action;
  const implementation: control.DeploymentServiceServer = {
    deployEnvironment: unary(log, (req, call) =>
      submit(call, {
        environmentId: req.environmentId,
        action: A.ACTION_DEPLOY,
        requester: req.requester,
        forceBuild: req.forceBuild,
        versions: req.versions,
      }),
    ),
    redeployEnvironment: unary(log, env(A.ACTION_REDEPLOY)),
    stopEnvironment: unary(log, env(A.ACTION_STOP)),
    restartEnvironment: unary(log, env(A.ACTION_RESTART)),
    deleteEnvironment: unary(log, env(A.ACTION_DELETE)),
    deployService: unary(log, svc(A.ACTION_DEPLOY)),
    stopService: unary(log, svc(A.ACTION_STOP)),
    restartService: unary(log, svc(A.ACTION_RESTART)),
    deleteService: unary(log, svc(A.ACTION_DELETE)),
    rollbackEnvironment: unary(log, (req, call) => {
      if (req.toDeploymentId === '') throw invalidArgument('to_deployment_id', 'is required');
      return submit(call, {
        environmentId: req.environmentId,
        action: A.ACTION_ROLLBACK,
        toDeploymentId: req.toDeploymentId,
        requester: req.requester,
        runLifecycleJobs: req.runLifecycleJobs ?? false,
      });
    }),
    resumeDeployment: unary(log, async (req, call) => {
      const current = await get(call, req.deploymentId);
      return submit(call, {
        environmentId: current.environmentId,
        resumeDeploymentId: req.deploymentId,
        requester: req.requester,
      });
    }),
    redeployService: unary(log, (req, call) =>
      submit(call, {
        environmentId: req.environmentId,
        action: A.ACTION_REDEPLOY,
        serviceIds: targetsOf(req),
        requester: req.requester,
        forceBuild: req.forceBuild,
      }),
    ),
    cancelDeployment: unary(log, async (req, call) => {
      const current = await get(call, req.deploymentId);
      return submit(call, { environmentId: current.environmentId, cancelDeploymentId: req.deploymentId });
    }),
    getDeployment: unary(log, async (req, call) => ({ deployment: await get(call, req.deploymentId) })),
    listDeployments: unary(log, async (req, call) => {
      if (req.environmentId === '') throw invalidArgument('environment_id', 'is required');
      await deps.scope.environment(call, req.environmentId);
      try {
        return await callUnary(deps.planner, 'listDeployments', req, BETWEEN_SERVICES);
      } catch (e) {
        throw domainErrorFromGrpc(e, 'planner');
      }
    }),
    planDeployment: unary(log, async (req, call) => {
      if (req.environmentId === '') throw invalidArgument('environment_id', 'is required');
      if (req.action === A.ACTION_UNSPECIFIED) throw invalidArgument('action', 'is required');
      await deps.scope.environment(call, req.environmentId);
      try {
        const { deployment } = await callUnary(
          deps.planner,
          'plan',
          {
            request: busv1.ActionRequested.fromPartial({
              ...req,
              runLifecycleJobs: req.runLifecycleJobs ?? false,
              requestId: newId(),
            }),
          },
          BETWEEN_SERVICES,
        );
        return { deployment: deployment! };
      } catch (e) {
        throw domainErrorFromGrpc(e, 'planner');
      }
    }),

    explainBuild: unary(log, async (req, call) => {
      await serviceOf(call, req.environmentId, req.serviceId);
      if (req.deploymentId !== undefined && (await get(call, req.deploymentId)).environmentId !== req.environmentId) {
        throw notFound('deployment', req.deploymentId, 'deployment_id');
      }
      try {
        return await callUnary(
          deps.build,
          'explainBuild',
          {
            serviceId: req.serviceId,
            ...(req.deploymentId !== undefined ? { deploymentId: req.deploymentId } : {}),
          },
          BETWEEN_SERVICES,
        );
      } catch (e) {
        throw domainErrorFromGrpc(e, 'build');
      }
    }),

    listReleases: unary(log, async (req, call) => {
      await serviceOf(call, req.environmentId, req.serviceId);
      try {
        return await callUnary(deps.releases, 'listReleases', { serviceId: req.serviceId });
      } catch (e) {
        throw domainErrorFromGrpc(e, 'deploy');
      }
    }),
    listCronRuns: unary(log, async (req, call) => {
      await serviceOf(call, req.environmentId, req.serviceId);
      if (req.limit > 500) throw invalidArgument('limit', 'must be at most 500');
      try {
        return await callUnary(deps.releases, 'listCronRuns', { serviceId: req.serviceId, limit: req.limit });
      } catch (e) {
        throw domainErrorFromGrpc(e, 'deploy');
      }
    }),

    // Running status and live logs: runtime.ts.
    ...runtimeHandlers({
      ...deps,
      reader,
      logsSubject: { stream: deps.bus.subjects.streams.logs, filter: deps.bus.subjects.logsFilter },
    }),

    watchDeployment: serverStream(log, async (req, call) => {
      let followed = await getRun(call, req.deploymentId);
      const first = followed.run;
      // The run's own event subject replays its latest event, then every change, in order; deltas are
      // applied to the whole run by sequence, and a missed one fetches the whole run again.
      const filter = deps.bus.subjects.runEvents(first.environmentId, first.id);
      const r = await reader(deps.bus.subjects.streams.events, filter, 'last_per_subject');
      let last: control.Deployment | undefined;
      const send = (d: control.Deployment) => {
        if (last && control.Deployment.encode(last).finish().join() === control.Deployment.encode(d).finish().join())
          return;
        last = d;
        call.write({ deployment: d });
      };
      try {
        if (r.pending === 0) send(first);
        if (isTerminal(first) && r.pending === 0) return;
        const messages = await r.consumer.consume();
        call.on('cancelled', () => void messages.close());
        for await (const m of messages) {
          const event = busv1.DeploymentEvent.decode(m.data);
          if (!event.deployment) continue;
          const next = followRun(followed, { ...event, deployment: event.deployment });
          followed = next === 'resync' ? await getRun(call, first.id) : next;
          send(followed.run);
          if (isTerminal(followed.run)) break;
        }
      } finally {
        await r.close();
      }
    }),

    streamLogs: serverStream(log, async (req, call) => {
      const run = await get(call, req.deploymentId);
      if (req.serviceId !== '' && !run.services.some((s) => s.serviceId === req.serviceId)) {
        throw notFound('service', req.serviceId, 'service_id');
      }
      const filter = deps.bus.subjects.logsFilter(run.id, req.serviceId === '' ? undefined : req.serviceId);
      const r = await reader(deps.bus.subjects.streams.logs, filter, 'all');
      let cancelled = false;
      call.on('cancelled', () => {
        cancelled = true;
      });
      try {
        let remaining = r.pending;
        for (;;) {
          if (cancelled) return;
          if (!req.follow && remaining <= 0) return;
          const batch = await r.consumer.fetch({ max_messages: 256, expires: 1_000 });
          let got = 0;
          for await (const m of batch) {
            got++;
            remaining = m.info.pending;
            const record = busv1.LogRecord.decode(m.data);
            if (record.line) call.write({ line: record.line });
          }
          // Following ends once the run is over and everything it logged has been sent.
          if (req.follow && got === 0 && isTerminal(await get(call, run.id))) {
            const tail = await r.consumer.info();
            if (tail.num_pending === 0) return;
          }
        }
      } finally {
        await r.close();
      }
    }),
  };
  return {
    definition: control.DeploymentServiceService,
    implementation: implementation as unknown as grpc.UntypedServiceImplementation,
    access: { roles: METHOD_ROLES['stageline.control.v1.DeploymentService'] ?? {} },
  };
}
