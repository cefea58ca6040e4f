// Actions and runs: deploy|stop|restart|delete|redeploy|rollback|cancel (each with --watch), watch,
// show, plan, history, logs, explain-build.
import * as grpc from '@grpc/grpc-js';
import { callUnary, isServiceError } from '@stageline/grpc';
import { control } from '@stageline/proto';
import type { Context } from '../context.ts';
import { ExitCode, UsageError } from '../errors.ts';
import {
  actionName,
  duration,
  isFinished,
  kindName,
  localTime,
  runElapsed,
  runStatusName,
  runStyle,
  stepName,
  table,
} from '../view/format.ts';
import { type RunContext, runTitle, stagesInOrder, summaryLines } from '../view/run-view.ts';
import { followRun, lastLogLines, sanitize } from '../watch.ts';
import { serviceLogsCommand } from './runtime.ts';

const A = control.Action;
export type ActionVerb = 'deploy' | 'redeploy' | 'stop' | 'restart' | 'delete';

export interface ActionOptions {
  /** Repeated: one run for all of them, in stage order. */
  service?: string[];
  version?: string;
  /** deploy of the environment: service=version pins. */
  pin?: string[];
  forceBuild?: boolean;
  watch?: boolean;
  yes?: boolean;
}

const envName = (e: control.Environment) => `${e.project}/${e.name}`;

/** Prints a run just accepted, or follows it to its end; the exit code says how it ended. */
async function report(
  ctx: Context,
  deployment: control.Deployment,
  environment: string,
  watch: boolean | undefined,
  wanted: control.DeploymentStatus = control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED,
  serviceNames?: string[],
): Promise<void> {
  const title = runTitle(deployment, environment, serviceNames);
  if (!watch) {
    ctx.emit({ deployment: control.Deployment.toJSON(deployment) }, () => {
      const queued = deployment.status === control.DeploymentStatus.DEPLOYMENT_STATUS_QUEUED;
      ctx.out(
        `${title}: run ${deployment.id} ${ctx.paint(runStyle(deployment.status), runStatusName(deployment.status))}${
          queued
            ? ` (queue position ${deployment.queuePosition}${deployment.waitsFor ? `, waits for run ${deployment.waitsFor}` : ''})`
            : ''
        }${deployment.merged ? ' — merged: this request joined that queued run' : ''}`,
        ctx.paint('dim', `  follow it: stageline watch ${deployment.id}`),
      );
    });
    return;
  }
  const { final, interrupted } = await followRun(ctx, deployment, title);
  if (ctx.format !== 'text') ctx.emit({ deployment: control.Deployment.toJSON(final) }, () => {});
  if (interrupted) throw new ExitCode(130);
  if (final.status !== wanted) throw new ExitCode(1);
}

export async function actionCommand(ctx: Context, verb: ActionVerb, ref: string | undefined, opts: ActionOptions) {
  const { environment } = await ctx.environment(ref);
  const environmentId = environment.id;
  const requester = ctx.requester;
  const forceBuild = opts.forceBuild ?? false;
  const named = opts.service ?? [];
  if (opts.version !== undefined && named.length !== 1) {
    throw new UsageError('--version needs exactly one --service: a version names one service (several: --pin S=V)');
  }
  if (opts.pin !== undefined && named.length > 0) throw new UsageError('--pin pins versions of an environment deploy');
  let deployment: control.Deployment | undefined;
  let serviceNames: string[] | undefined;
  if (named.length > 0) {
    const services = [];
    for (const name of named) services.push(await ctx.service(environmentId, name));
    serviceNames = services.map((s) => s.name);
    const ids = services.map((s) => s.id);
    // One service in the old field (servers before service_ids understand it), several in the new one.
    const target = ids.length === 1 ? { serviceId: ids[0]!, serviceIds: [] } : { serviceId: '', serviceIds: ids };
    const request = { environmentId, ...target, version: opts.version ?? '', requester, forceBuild };
    const c = ctx.clients.deployments;
    deployment = (
      verb === 'deploy'
        ? await callUnary(c, 'deployService', request)
        : verb === 'redeploy'
          ? await callUnary(c, 'redeployService', { environmentId, serviceIds: ids, requester, forceBuild })
          : verb === 'stop'
            ? await callUnary(c, 'stopService', request)
            : verb === 'restart'
              ? await callUnary(c, 'restartService', request)
              : await callUnary(c, 'deleteService', request)
    ).deployment;
  } else {
    if (verb === 'delete' && !opts.yes) {
      throw new UsageError(
        `delete removes every service of ${envName(environment)} (skipped ones too), their data, then the environment: add --yes to go ahead`,
      );
    }
    const versions: Record<string, string> = {};
    for (const pin of opts.pin ?? []) {
      const at = pin.indexOf('=');
      if (at <= 0 || at === pin.length - 1) throw new UsageError(`--pin ${pin}: expected <service>=<version>`);
      versions[(await ctx.service(environmentId, pin.slice(0, at))).id] = pin.slice(at + 1);
    }
    const request = { environmentId, requester, forceBuild, versions };
    const c = ctx.clients.deployments;
    const method = `${verb}Environment` as const;
    deployment = (await callUnary(c, method, request)).deployment;
  }
  await report(
    ctx,
    deployment!,
    envName(environment),
    opts.watch,
    control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED,
    serviceNames,
  );
}

export async function rollbackCommand(
  ctx: Context,
  ref: string | undefined,
  opts: { to: string; watch?: boolean; runLifecycleJobs?: boolean },
) {
  const { environment } = await ctx.environment(ref);
  const { deployment } = await callUnary(ctx.clients.deployments, 'rollbackEnvironment', {
    environmentId: environment.id,
    toDeploymentId: opts.to,
    requester: ctx.requester,
    runLifecycleJobs: opts.runLifecycleJobs ?? false,
  });
  await report(ctx, deployment!, envName(environment), opts.watch);
}

/** A FAILED or CANCELED run taken up where it stopped: only what did not succeed runs. */
export async function resumeCommand(ctx: Context, runId: string, opts: { watch?: boolean }) {
  const { deployment } = await callUnary(ctx.clients.deployments, 'resumeDeployment', {
    deploymentId: runId,
    requester: ctx.requester,
  });
  await report(ctx, deployment!, await environmentNameOf(ctx, deployment!), opts.watch);
}

async function environmentNameOf(ctx: Context, run: control.Deployment): Promise<string> {
  try {
    const { environment } = await callUnary(ctx.clients.environments, 'getEnvironment', {
      environmentId: run.environmentId,
    });
    return envName(environment!);
  } catch {
    return run.environmentId;
  }
}

export async function cancelCommand(ctx: Context, runId: string, opts: { watch?: boolean }) {
  const { deployment } = await callUnary(ctx.clients.deployments, 'cancelDeployment', { deploymentId: runId });
  await report(
    ctx,
    deployment!,
    await environmentNameOf(ctx, deployment!),
    opts.watch,
    control.DeploymentStatus.DEPLOYMENT_STATUS_CANCELED,
  );
}

export async function watchCommand(ctx: Context, runId: string) {
  const run = await ctx.run(runId);
  await report(ctx, run, await environmentNameOf(ctx, run), true);
}

export async function showCommand(ctx: Context, runId: string) {
  const run = await ctx.run(runId);
  const context: RunContext = {
    title: runTitle(run, await environmentNameOf(ctx, run)),
    plan: undefined,
    failureLogs: new Map(),
  };
  ctx.emit(control.GetDeploymentResponse.toJSON({ deployment: run }), () => {});
  if (ctx.format !== 'text') return;
  for (const s of run.services) {
    const failed = s.steps.findLast((st) => st.outcome === control.StepOutcome.STEP_OUTCOME_ERROR);
    if (failed) context.failureLogs.set(s.serviceId, await lastLogLines(ctx, run.id, s.serviceId, failed.kind));
  }
  ctx.out(...summaryLines(run, context, ctx.paint, Date.now()));
  if (!isFinished(run)) ctx.out('', ctx.paint('dim', `still going: stageline watch ${run.id}`));
}

const ACTIONS: Record<string, control.Action> = {
  deploy: A.ACTION_DEPLOY,
  redeploy: A.ACTION_REDEPLOY,
  stop: A.ACTION_STOP,
  restart: A.ACTION_RESTART,
  delete: A.ACTION_DELETE,
  rollback: A.ACTION_ROLLBACK,
};

function plannedWork(s: control.ServiceRun): string {
  if (s.status === control.ServiceState.SERVICE_STATE_SKIPPED) {
    return s.message && s.message !== 'skipped' ? `skip: ${s.message}` : 'skip (the service is skipped)';
  }
  const words: Partial<Record<control.StepKind, string>> = {
    [control.StepKind.STEP_KIND_GIT_CLONE]: 'clone',
    [control.StepKind.STEP_KIND_BUILD]: 'build',
    [control.StepKind.STEP_KIND_MIRROR_IMAGE]: 'mirror',
    [control.StepKind.STEP_KIND_DEPLOYMENT]: 'deploy',
    [control.StepKind.STEP_KIND_EXECUTING]: 'run job',
    [control.StepKind.STEP_KIND_STOP]: 'stop',
    [control.StepKind.STEP_KIND_RESTART]: 'restart',
    [control.StepKind.STEP_KIND_DELETE]: 'delete',
  };
  const steps = s.steps
    .filter((st) => words[st.kind])
    .map((st) => `${words[st.kind]}${st.outcome === control.StepOutcome.STEP_OUTCOME_CACHE_HIT ? ' (cache hit)' : ''}`);
  return steps.length > 0 ? steps.join(' → ') : 'nothing to do';
}

export async function planCommand(
  ctx: Context,
  ref: string | undefined,
  opts: {
    action: string;
    service?: string[];
    version?: string;
    to?: string;
    forceBuild?: boolean;
    runLifecycleJobs?: boolean;
  },
) {
  const action = ACTIONS[opts.action.toLowerCase()];
  if (action === undefined) throw new UsageError(`--action must be one of ${Object.keys(ACTIONS).join(', ')}`);
  if (action === A.ACTION_ROLLBACK && !opts.to) throw new UsageError('planning a rollback needs --to <run>');
  const { environment } = await ctx.environment(ref);
  const serviceIds: string[] = [];
  for (const name of opts.service ?? []) serviceIds.push((await ctx.service(environment.id, name)).id);
  const response = await callUnary(ctx.clients.deployments, 'planDeployment', {
    environmentId: environment.id,
    action,
    serviceIds,
    version: opts.version ?? '',
    forceBuild: opts.forceBuild ?? false,
    toDeploymentId: opts.to ?? '',
    versions: {},
    runLifecycleJobs: opts.runLifecycleJobs ?? false,
  });
  const run = response.deployment!;
  ctx.emit(control.PlanDeploymentResponse.toJSON(response), () => {
    ctx.out(
      `${ctx.paint('bold', `plan: ${runTitle(run, envName(environment))}`)} ${ctx.paint('dim', '(dry run: nothing is built, mirrored or deployed)')}`,
      '',
    );
    const rows: string[][] = [];
    for (const stage of stagesInOrder(run)) {
      const members = run.services.filter((s) => s.stageId === stage.stageId);
      rows.push([
        `stage ${stage.order}`,
        ctx.paint('bold', stage.name),
        members.length === 0 ? ctx.paint('dim', '(no services)') : '',
        '',
      ]);
      for (const s of members) {
        const work = plannedWork(s);
        rows.push([
          '',
          `  ${s.name}`,
          s.status === control.ServiceState.SERVICE_STATE_SKIPPED ? ctx.paint('dim', work) : work,
          s.version ? ctx.paint('dim', `version ${s.version}`) : '',
        ]);
        // A planned rollback says what it changes for each service it restores.
        if (action === A.ACTION_ROLLBACK && s.status !== control.ServiceState.SERVICE_STATE_SKIPPED && s.message) {
          rows.push(['', '', ctx.paint('dim', `    ${s.message}`), '']);
        }
      }
    }
    ctx.out(...table(rows));
    // What the build service predicted for each build and mirror: a cache hit, or why it would work.
    const predictions = run.services.flatMap((s) =>
      s.steps
        .filter(
          (st) =>
            (st.kind === control.StepKind.STEP_KIND_BUILD || st.kind === control.StepKind.STEP_KIND_MIRROR_IMAGE) &&
            st.message !== '',
        )
        .map((st) => [`  ${s.name}`, ctx.paint('dim', st.message)]),
    );
    if (predictions.length > 0) ctx.out('', ctx.paint('bold', 'builds and mirrors:'), ...table(predictions));
    if (action === A.ACTION_STOP || action === A.ACTION_DELETE)
      ctx.out('', ctx.paint('dim', 'stages run in reverse order.'));
  });
}

export async function historyCommand(ctx: Context, ref: string | undefined, opts: { limit: string }) {
  const { environment } = await ctx.environment(ref);
  const limit = Number(opts.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a positive integer');
  const deployments: control.Deployment[] = [];
  let pageToken = '';
  do {
    const page = await callUnary(ctx.clients.deployments, 'listDeployments', {
      environmentId: environment.id,
      pageSize: Math.min(500, limit - deployments.length),
      pageToken,
    });
    deployments.push(...page.deployments);
    pageToken = page.nextPageToken;
  } while (pageToken !== '' && deployments.length < limit);
  ctx.emit(control.ListDeploymentsResponse.toJSON({ deployments, nextPageToken: pageToken }), () => {
    if (deployments.length === 0) {
      ctx.out(`${envName(environment)} has no runs yet.`);
      return;
    }
    const now = Date.now();
    const rows = [['RUN', 'ACTION', 'STATUS', 'SCOPE', 'REQUESTER', 'CREATED', 'TOOK'].map((h) => ctx.paint('dim', h))];
    for (const d of deployments) {
      const took = isFinished(d) ? runElapsed(d, now) : undefined;
      rows.push([
        d.id,
        actionName(d.action).toLowerCase(),
        ctx.paint(runStyle(d.status), runStatusName(d.status)),
        d.serviceIds.length > 0 ? d.services.map((s) => s.name).join(',') || 'services' : 'environment',
        d.requester,
        localTime(d.createdAt),
        took === undefined ? '' : duration(took),
      ]);
    }
    ctx.out(...table(rows));
    ctx.out(
      '',
      ctx.paint('dim', 'stageline show <run> for one run; stageline rollback --to <run> returns to a succeeded one.'),
    );
  });
}

/** A service's releases, newest first (control's ListReleases; the deploy service answers). */
export async function releasesCommand(ctx: Context, ref: string | undefined, opts: { service: string }) {
  const { environment } = await ctx.environment(ref);
  const service = await ctx.service(environment.id, opts.service);
  const response = await callUnary(ctx.clients.deployments, 'listReleases', {
    environmentId: environment.id,
    serviceId: service.id,
  });
  ctx.emit(control.ListReleasesResponse.toJSON(response), () => {
    if (response.releases.length === 0) {
      ctx.out(`${service.name} in ${envName(environment)} has no releases yet.`);
      return;
    }
    const rows = [['REVISION', 'STATUS', 'VERSION', 'IMAGE', 'RUN', 'CREATED'].map((h) => ctx.paint('dim', h))];
    for (const r of response.releases) {
      rows.push([String(r.revision), r.status, r.version, r.image, r.deploymentId, localTime(r.createdAt)]);
    }
    ctx.out(...table(rows));
    const failed = response.releases.filter((r) => r.message !== '');
    for (const r of failed.slice(0, 3)) ctx.out(ctx.paint('dim', `  revision ${r.revision}: ${r.message}`));
  });
}

/** A CRON_JOB's runs on the local runtime, newest first, with their last log lines (--log). */
export async function cronRunsCommand(
  ctx: Context,
  ref: string | undefined,
  opts: { service: string; limit: string; log?: boolean },
) {
  const { environment } = await ctx.environment(ref);
  const service = await ctx.service(environment.id, opts.service);
  const limit = Number(opts.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new UsageError('--limit must be 1 to 500');
  const response = await callUnary(ctx.clients.deployments, 'listCronRuns', {
    environmentId: environment.id,
    serviceId: service.id,
    limit,
  });
  ctx.emit(control.ListCronRunsResponse.toJSON(response), () => {
    if (response.runs.length === 0) {
      ctx.out(`${service.name} in ${envName(environment)} has not run yet.`);
      return;
    }
    const rows = [['SCHEDULED', 'STATUS', 'EXIT', 'REVISION', 'MESSAGE'].map((h) => ctx.paint('dim', h))];
    for (const r of response.runs) {
      rows.push([localTime(r.scheduledAt), r.status, String(r.exitCode), String(r.revision), r.message]);
    }
    ctx.out(...table(rows));
    if (opts.log === true) {
      for (const r of response.runs)
        ctx.out('', ctx.paint('bold', localTime(r.scheduledAt)), ...r.log.map((l) => `  ${l}`));
    }
  });
}

const STEP_KINDS = Object.values(control.StepKind).filter(
  (k) => typeof k === 'number' && k !== 0,
) as control.StepKind[];

function parseStep(value: string): control.StepKind {
  const wanted = value
    .toUpperCase()
    .replace(/-/g, '_')
    .replace(/^STEP_KIND_/, '');
  const found = STEP_KINDS.find((k) => stepName(k) === wanted);
  if (found === undefined)
    throw new UsageError(`--step must be one of ${STEP_KINDS.map((k) => stepName(k).toLowerCase()).join(', ')}`);
  return found;
}

export async function logsCommand(
  ctx: Context,
  ref: string | undefined,
  opts: { run?: string; follow?: boolean; service?: string; step?: string; tail?: string; since?: string },
) {
  const step = opts.step === undefined ? undefined : parseStep(opts.step);
  if (opts.service !== undefined && !opts.run && step === undefined) {
    // A service without a run: its own output, live (runtime.ts).
    const { environment } = await ctx.environment(ref);
    await serviceLogsCommand(ctx, environment, opts.service, opts);
    return;
  }
  if (opts.tail !== undefined || opts.since !== undefined) {
    throw new UsageError("--tail and --since are for a service's own output: --service S without --run or --step");
  }
  let run: control.Deployment | undefined;
  if (opts.run) {
    run = await ctx.run(opts.run);
  } else {
    const { environment } = await ctx.environment(ref);
    run = await ctx.latestRun(environment.id);
    if (!run) throw new UsageError(`${envName(environment)} has no runs yet`);
  }
  const names = new Map(run.services.map((s) => [s.serviceId, s.name]));
  let serviceId = '';
  if (opts.service !== undefined) {
    const found = run.services.find((s) => s.name === opts.service || s.serviceId === opts.service);
    if (!found) {
      throw new UsageError(
        `service ${opts.service} is not part of run ${run.id} (it has: ${[...names.values()].join(', ')})`,
      );
    }
    serviceId = found.serviceId;
  }
  if (ctx.format === 'text' && ctx.tty)
    ctx.err(
      ctx.paint('dim', `logs of run ${run.id} (${actionName(run.action).toLowerCase()}, ${runStatusName(run.status)})`),
    );
  const width = Math.max(8, ...[...names.values()].map((n) => n.length));
  let count = 0;
  await new Promise<void>((resolve, reject) => {
    const call = ctx.clients.deployments.streamLogs({ deploymentId: run.id, serviceId, follow: opts.follow ?? false });
    const stop = ctx.io.onInterrupt(() => call.cancel());
    call.on('data', (m: control.StreamLogsResponse) => {
      const l = m.line;
      if (!l || (step !== undefined && l.step !== step)) return;
      count++;
      if (ctx.format === 'json') {
        // One JSON object per line (NDJSON), so that a follow can be piped into jq.
        ctx.io.stdout.write(
          `${JSON.stringify({ ...(control.LogLine.toJSON(l) as object), service: names.get(l.serviceId) ?? l.serviceId })}\n`,
        );
        return;
      }
      if (ctx.format === 'yaml') {
        ctx.io.stdout.write(
          `- ${JSON.stringify({ ...(control.LogLine.toJSON(l) as object), service: names.get(l.serviceId) ?? l.serviceId })}\n`,
        );
        return;
      }
      const message = ctx.tty ? sanitize(l.message.replace(/\n$/, '')) : l.message.replace(/\n$/, '');
      ctx.out(
        `${ctx.paint('dim', l.timestamp?.toISOString() ?? '')} ${ctx.paint('cyan', (names.get(l.serviceId) ?? l.serviceId).padEnd(width))} ${ctx.paint('dim', stepName(l.step).padEnd(12))} ${message}`,
      );
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
  if (count === 0 && ctx.format === 'text') ctx.err(ctx.paint('dim', 'no log lines (yet) for this run and filter.'));
}

export async function explainBuildCommand(
  ctx: Context,
  ref: string | undefined,
  opts: { service: string; run?: string },
) {
  const { environment } = await ctx.environment(ref);
  const service = await ctx.service(environment.id, opts.service);
  let response: control.ExplainBuildResponse;
  try {
    response = await callUnary(
      ctx.clients.deployments,
      'explainBuild',
      control.ExplainBuildRequest.fromPartial({
        environmentId: environment.id,
        serviceId: service.id,
        ...(opts.run ? { deploymentId: opts.run } : {}),
      }),
    );
  } catch (e) {
    if (isServiceError(e) && e.code === grpc.status.UNIMPLEMENTED) {
      ctx.err(
        `stageline: control at ${ctx.config.address.value} cannot explain builds yet (ExplainBuild is not implemented in this version).`,
        `  what ran is in the run itself: stageline logs --service ${service.name} --step build`,
      );
      throw new ExitCode(3);
    }
    // control answered, but could not ask a build service: not a reason to doubt control's address.
    if (isServiceError(e) && e.code === grpc.status.UNAVAILABLE && e.details.startsWith('build: ')) {
      ctx.err(`stageline: control could not ask the build service: ${e.details.slice('build: '.length)}`);
      throw new ExitCode(3);
    }
    throw e;
  }
  ctx.emit(control.ExplainBuildResponse.toJSON(response), () => {
    ctx.out(
      `${ctx.paint('bold', service.name)} (${kindName(service.kind)}) in ${envName(environment)}`,
      `  cache key       ${response.cacheKey}`,
      `  image           ${response.image}`,
      `  previous key    ${response.previousCacheKey || '(none: first build)'}`,
      response.previousCacheKey === ''
        ? ''
        : response.previousCacheKey === response.cacheKey
          ? ctx.paint('green', '  same inputs as the previous build: a cache hit')
          : ctx.paint('yellow', '  inputs changed since the previous build: rebuilt'),
      '',
    );
    const rows = [['INPUT', 'DIGEST', 'CHANGED', 'DETAIL'].map((h) => ctx.paint('dim', h))];
    for (const i of response.inputs) {
      rows.push([i.name, i.digest.slice(0, 19), i.changed ? ctx.paint('yellow', 'changed') : '', i.detail]);
    }
    ctx.out(...table(rows));
  });
}
