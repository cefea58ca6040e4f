// Running status and live logs: the RUNNING and INSTANCES columns of `status`, and `logs --service S`
// without `--run` (DeploymentService/GetRuntimeStatus and StreamServiceLogs).
import * as grpc from '@grpc/grpc-js';
import { callUnary, isServiceError } from '@stageline/grpc';
import { control, deploy } from '@stageline/proto';
import type { Context } from '../context.ts';
import { UsageError } from '../errors.ts';
import type { Style } from '../view/format.ts';
import { sanitize } from '../watch.ts';

const RS = deploy.RuntimeState;

export const runtimeStateName = (s: deploy.RuntimeState): string =>
  deploy.runtimeStateToJSON(s).replace('RUNTIME_STATE_', '');

export function runtimeStyle(s: deploy.RuntimeState): Style {
  switch (s) {
    case RS.RUNTIME_STATE_RUNNING:
    case RS.RUNTIME_STATE_COMPLETED:
      return 'green';
    case RS.RUNTIME_STATE_WARNING:
      return 'yellow';
    case RS.RUNTIME_STATE_ERROR:
      return 'red';
    default:
      return 'dim';
  }
}

/**
 * The running state of each service with a live release, by service id; undefined (and a note on
 * stderr) when control or the deploy service cannot say: `status` still shows the rest.
 */
export async function runtimeOf(
  ctx: Context,
  environmentId: string,
): Promise<Map<string, deploy.ServiceRuntime> | undefined> {
  try {
    const { services } = await callUnary(ctx.clients.deployments, 'getRuntimeStatus', { environmentId });
    return new Map(services.map((s) => [s.serviceId, s]));
  } catch (e) {
    if (isServiceError(e) && e.code !== grpc.status.PERMISSION_DENIED && e.code !== grpc.status.UNAUTHENTICATED) {
      ctx.err(ctx.paint('dim', `(running status unavailable: ${grpc.status[e.code]}: ${e.details})`));
      return undefined;
    }
    throw e;
  }
}

/** "1/1 ready", "0/1 ready, 2 restarts, exit 137 (killed (SIGKILL))". */
export function instancesSummary(r: deploy.ServiceRuntime): string {
  if (r.instances.length === 0) return '';
  const kind = r.kind;
  if (kind === 'LIFECYCLE_JOB' || kind === 'CRON_JOB') {
    const last = r.instances[0]!;
    return `${last.name} ${last.state}${last.hasLastExit ? `, exit ${last.lastExitCode}` : ''}`;
  }
  const ready = r.instances.filter((i) => i.ready).length;
  const restarts = r.instances.reduce((n, i) => n + i.restarts, 0);
  const exit = r.instances.find((i) => !i.ready && i.hasLastExit);
  return [
    `${ready}/${r.instances.length} ready`,
    ...(restarts > 0 ? [`${restarts} restart${restarts === 1 ? '' : 's'}`] : []),
    ...(exit !== undefined ? [`exit ${exit.lastExitCode} (${exit.lastExitReason})`] : []),
  ].join(', ');
}

/** The two columns `status` adds per service: its running state and its instances. */
export function runtimeColumns(ctx: Context, r: deploy.ServiceRuntime | undefined, known: boolean): [string, string] {
  if (!known) return [ctx.paint('dim', '?'), ''];
  if (r === undefined) return [ctx.paint('dim', '-'), ''];
  return [ctx.paint(runtimeStyle(r.state), runtimeStateName(r.state)), instancesSummary(r)];
}

/** `logs --service S` without `--run`: the service's own output, followed live unless --no-follow. */
export async function serviceLogsCommand(
  ctx: Context,
  environment: control.Environment,
  serviceRef: string,
  opts: { follow?: boolean; tail?: string; since?: string },
): Promise<void> {
  const service = await ctx.service(environment.id, serviceRef);
  const tail = opts.tail === undefined ? 0 : Number(opts.tail);
  if (opts.tail !== undefined && (!Number.isInteger(tail) || tail < 1 || tail > 10_000)) {
    throw new UsageError('--tail must be 1..10000');
  }
  const since = opts.since === undefined ? undefined : parseSince(opts.since, new Date());
  const follow = opts.follow ?? true;
  if (ctx.format === 'text' && ctx.tty) {
    ctx.err(ctx.paint('dim', `${service.name}'s output${follow ? ', following (Ctrl-C stops)' : ''}`));
  }
  let count = 0;
  await new Promise<void>((resolve, reject) => {
    const call = ctx.clients.deployments.streamServiceLogs(
      control.StreamServiceLogsRequest.fromPartial({
        environmentId: environment.id,
        serviceId: service.id,
        follow,
        tailLines: tail,
        ...(since !== undefined ? { since } : {}),
      }),
    );
    const stop = ctx.io.onInterrupt(() => call.cancel());
    call.on('data', (m: control.StreamServiceLogsResponse) => {
      const l = m.line;
      if (!l) return;
      count++;
      if (ctx.format !== 'text') {
        const json = { ...(deploy.ServiceLogLine.toJSON(l) as object), service: service.name };
        ctx.io.stdout.write(`${ctx.format === 'yaml' ? '- ' : ''}${JSON.stringify(json)}\n`);
        return;
      }
      const message = ctx.tty ? sanitize(l.message.replace(/\n$/, '')) : l.message.replace(/\n$/, '');
      ctx.out(`${ctx.paint('dim', l.timestamp?.toISOString() ?? '')} ${ctx.paint('cyan', l.instance)} ${message}`);
    });
    call.on('end', () => {
      stop();
      resolve();
    });
    call.on('error', (e: grpc.ServiceError) => {
      stop();
      if (e.code === grpc.status.CANCELLED) resolve();
      else reject(e);
    });
  });
  if (count === 0 && ctx.format === 'text' && !follow) ctx.err(ctx.paint('dim', `no output from ${service.name}.`));
}

/** `--since 10m` (s, m, h, d ago) or a date (ISO 8601). */
export function parseSince(value: string, now: Date): Date {
  const ago = /^(\d+)(s|m|h|d)$/.exec(value);
  if (ago !== null) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now.getTime() - Number(ago[1]) * unit);
  }
  const at = new Date(value);
  if (Number.isNaN(at.getTime())) throw new UsageError('--since must be a duration (30s, 10m, 2h, 1d) or a date');
  return at;
}
