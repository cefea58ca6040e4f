// DeploymentService's running status and live logs (GetRuntimeStatus, StreamServiceLogs): the deploy
// service answers through its internal RuntimeService; a lifecycle job's output is what its last run
// captured, read from that run's logs on the bus. Same authorization as the other reads (ROLE_VIEWER,
// the environment's project in the token's scope).

import { failedPrecondition, invalidArgument, notFound } from '@stageline/errors';
import { callUnary, domainErrorFromGrpc, serverStream, unary } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { bus as busv1, control, deploy } from '@stageline/proto';
import type { Scope } from './access.ts';

/** A service of an environment as the runtime handlers need it. */
export interface RuntimeServiceInfo {
  id: string;
  name: string;
  kind: control.ServiceKind;
}

/** An ephemeral in-order reader of a stream (deployments.ts' `reader`). */
export type StreamReader = (
  stream: string,
  filter: string,
  deliver: 'all' | 'last_per_subject',
) => Promise<{
  pending: number;
  consumer: {
    fetch(o: {
      max_messages: number;
      expires: number;
    }): Promise<AsyncIterable<{ data: Uint8Array; info: { pending: number } }>>;
  };
  close: () => Promise<unknown>;
}>;

export interface RuntimeHandlersDeps {
  runtime: deploy.RuntimeServiceClient;
  releases: deploy.ReleaseServiceClient;
  scope: Scope;
  serviceInfos: (environmentId: string) => Promise<RuntimeServiceInfo[]>;
  logsSubject: { stream: string; filter: (deploymentId: string, serviceId: string) => string };
  reader: StreamReader;
  log: Logger;
}

const MAX_TAIL_LINES = 10_000;
const DEFAULT_TAIL_LINES = 100;

export function runtimeHandlers(deps: RuntimeHandlersDeps) {
  const { log } = deps;

  async function serviceOf(call: object, environmentId: string, serviceId: string): Promise<RuntimeServiceInfo> {
    if (environmentId === '') throw invalidArgument('environment_id', 'is required');
    if (serviceId === '') throw invalidArgument('service_id', 'is required');
    await deps.scope.environment(call, environmentId);
    const found = (await deps.serviceInfos(environmentId)).find((s) => s.id === serviceId);
    if (found === undefined) throw notFound('service', serviceId, 'service_id');
    return found;
  }

  /** What a lifecycle job's last successful run printed (its lines in that run's logs). */
  async function jobRunLines(
    info: RuntimeServiceInfo,
    req: control.StreamServiceLogsRequest,
    write: (line: deploy.ServiceLogLine) => void,
  ): Promise<void> {
    let releases: deploy.Release[];
    try {
      releases = (await callUnary(deps.releases, 'listReleases', { serviceId: info.id })).releases;
    } catch (e) {
      throw domainErrorFromGrpc(e, 'deploy');
    }
    const ran = releases.find((r) => r.status === 'DEPLOYED') ?? releases.find((r) => r.deploymentId !== '');
    if (ran === undefined) throw failedPrecondition(`lifecycle job ${info.name} has not run yet`);
    const r = await deps.reader(deps.logsSubject.stream, deps.logsSubject.filter(ran.deploymentId, info.id), 'all');
    const prefix = `${info.name} | `;
    const lines: deploy.ServiceLogLine[] = [];
    try {
      let remaining = r.pending;
      while (remaining > 0) {
        let got = 0;
        for await (const m of await r.consumer.fetch({ max_messages: 256, expires: 1_000 })) {
          got++;
          remaining = m.info.pending;
          const line = busv1.LogRecord.decode(m.data).line;
          if (line === undefined || !line.message.startsWith(prefix)) continue;
          if (req.since !== undefined && line.timestamp !== undefined && line.timestamp < req.since) continue;
          lines.push(
            deploy.ServiceLogLine.fromPartial({
              serviceId: info.id,
              instance: `${info.name}-r${ran.revision}`,
              ...(line.timestamp !== undefined ? { timestamp: line.timestamp } : {}),
              message: line.message.slice(prefix.length),
            }),
          );
        }
        if (got === 0) break;
      }
    } finally {
      await r.close();
    }
    for (const line of lines.slice(-(req.tailLines === 0 ? DEFAULT_TAIL_LINES : req.tailLines))) write(line);
  }

  return {
    getRuntimeStatus: unary(log, async (req: control.GetRuntimeStatusRequest, call: object) => {
      if (req.environmentId === '') throw invalidArgument('environment_id', 'is required');
      await deps.scope.environment(call, req.environmentId);
      try {
        return await callUnary(deps.runtime, 'getRuntimeStatus', { environmentId: req.environmentId });
      } catch (e) {
        throw domainErrorFromGrpc(e, 'deploy');
      }
    }),

    streamServiceLogs: serverStream(
      log,
      async (
        req: control.StreamServiceLogsRequest,
        call: { write(m: control.StreamServiceLogsResponse): unknown; on(e: 'cancelled', f: () => void): unknown },
      ) => {
        if (req.tailLines > MAX_TAIL_LINES) throw invalidArgument('tail_lines', `must be at most ${MAX_TAIL_LINES}`);
        const info = await serviceOf(call, req.environmentId, req.serviceId);
        const write = (line: deploy.ServiceLogLine) => call.write({ line });
        if (info.kind === control.ServiceKind.SERVICE_KIND_LIFECYCLE_JOB) {
          await jobRunLines(info, req, write);
          return;
        }
        const upstream = deps.runtime.streamServiceLogs(
          deploy.StreamServiceLogsRequest.fromPartial({
            environmentId: req.environmentId,
            serviceId: req.serviceId,
            follow: req.follow,
            tailLines: req.tailLines,
            ...(req.since !== undefined ? { since: req.since } : {}),
          }),
        );
        call.on('cancelled', () => upstream.cancel());
        await new Promise<void>((resolve, reject) => {
          upstream.on('data', (m: deploy.StreamServiceLogsResponse) => {
            if (m.line !== undefined) write(m.line);
          });
          upstream.on('end', () => resolve());
          upstream.on('error', (e: { code?: number }) => {
            // Our own cancel (the client went away) is not an error to report.
            if (e.code === 1) resolve();
            else reject(domainErrorFromGrpc(e, 'deploy'));
          });
        });
      },
    ),
  };
}
