// Reading and shaping environments: env list|get|clone, pipeline, stage …, service …, status.
import { callUnary } from '@stageline/grpc';
import { control, deploy } from '@stageline/proto';
import type { Context } from '../context.ts';
import {
  duration,
  envStatusName,
  kindName,
  localTime,
  runElapsed,
  runStatusName,
  runStyle,
  stateName,
  stateStyle,
  table,
} from '../view/format.ts';
import { runtimeColumns, runtimeOf } from './runtime.ts';

const envStyle = (s: control.EnvironmentStatus) => {
  const name = envStatusName(s);
  if (name.endsWith('_ERROR')) return 'red' as const;
  if (name === 'DEPLOYED') return 'green' as const;
  if (name === 'NEVER_DEPLOYED' || name === 'STOPPED' || name === 'DELETED') return 'dim' as const;
  return 'cyan' as const;
};

function sourceText(s: control.Service): string {
  const src = s.source;
  switch (src?.$case) {
    case 'container':
      return `${src.value.image}:${src.value.tag}`;
    case 'application':
      return `${src.value.gitUrl}${src.value.commit ? `@${src.value.commit.slice(0, 12)}` : src.value.branch ? `#${src.value.branch}` : ''}`;
    case 'database':
      return `${control.databaseEngineToJSON(src.value.engine).replace('DATABASE_ENGINE_', '').toLowerCase()} ${src.value.version}`;
    case 'job': {
      const from = src.value.from;
      const what =
        from?.$case === 'container'
          ? `${from.value.image}:${from.value.tag}`
          : from?.$case === 'application'
            ? from.value.gitUrl
            : '';
      const when = src.value.schedule
        ? `cron "${src.value.schedule}"`
        : ['onDeploy', 'onStop', 'onDelete'].filter((k) => src.value[k as 'onDeploy']).join(',');
      return `${what} (${when})`;
    }
    default:
      return '';
  }
}

/** The stages in order with their services, as a table. */
export function pipelineRows(ctx: Context, pipeline: control.Pipeline, services: control.Service[]): string[] {
  const byId = new Map(services.map((s) => [s.id, s]));
  const rows: string[][] = [['POS', 'STAGE', 'SERVICE', 'KIND', 'SKIPPED', 'SOURCE'].map((h) => ctx.paint('dim', h))];
  for (const stage of pipeline.stages) {
    const first = [String(stage.order), ctx.paint('bold', stage.name)];
    if (stage.serviceIds.length === 0) rows.push([...first, ctx.paint('dim', '(empty)'), '', '', '']);
    stage.serviceIds.forEach((id, i) => {
      const s = byId.get(id);
      const lead = i === 0 ? first : ['', ''];
      rows.push([
        ...lead,
        s?.name ?? id,
        s ? kindName(s.kind) : '',
        s?.skipped ? ctx.paint('yellow', 'skipped') : '',
        s ? sourceText(s) : '',
      ]);
    });
  }
  return table(rows);
}

export async function printPipeline(ctx: Context, environmentId: string): Promise<void> {
  const [{ pipeline }, services] = await Promise.all([
    callUnary(ctx.clients.pipelines, 'getPipeline', { environmentId }),
    ctx.services(environmentId),
  ]);
  ctx.out(...pipelineRows(ctx, pipeline!, services));
}

export async function envList(ctx: Context, opts: { allProjects: boolean }): Promise<void> {
  const project = opts.allProjects ? undefined : ctx.config.project;
  const environments = await ctx.findEnvironments(project);
  ctx.emit(control.ListEnvironmentsResponse.toJSON({ environments, nextPageToken: '' }), () => {
    if (environments.length === 0) {
      ctx.out(`no environments${project ? ` in project ${project}` : ''} yet: stageline apply -f <file> creates one.`);
      return;
    }
    const rows = [['ENVIRONMENT', 'STATUS', 'RUNTIME', 'ID', 'NOTE'].map((h) => ctx.paint('dim', h))];
    for (const e of environments) {
      const note = [e.preview ? 'preview' : '', e.clonedFromId ? `clone of ${e.clonedFromId}` : '']
        .filter(Boolean)
        .join(', ');
      rows.push([
        `${e.project}/${e.name}`,
        ctx.paint(envStyle(e.status), envStatusName(e.status)),
        e.runtime,
        e.id,
        note,
      ]);
    }
    ctx.out(...table(rows));
  });
}

function settingsText(s: control.EnvironmentSettings | undefined): string[] {
  if (!s) return [];
  return [
    `max parallel builds ${s.maxParallelBuilds ?? 7}, deploys ${s.maxParallelDeploys ?? 7}`,
    `scheduling ${control.schedulingModeToJSON(s.schedulingMode).replace('SCHEDULING_MODE_', '')}, mirror ${control.mirrorModeToJSON(s.mirrorMode).replace('MIRROR_MODE_', '')}`,
    `namespace ${s.namespace || '-'}${s.kubernetesContext ? `, kubernetes context ${s.kubernetesContext}` : ''}`,
  ];
}

export async function envGet(ctx: Context, ref: string | undefined): Promise<void> {
  const { environment, pipeline } = await ctx.environment(ref);
  ctx.emit(control.GetEnvironmentResponse.toJSON({ environment, pipeline }), () => {
    const e = environment;
    const rows = [
      ['environment', ctx.paint('bold', `${e.project}/${e.name}`)],
      ['id', e.id],
      ['status', ctx.paint(envStyle(e.status), envStatusName(e.status))],
      ['runtime', e.runtime],
      ...settingsText(e.settings).map((t, i) => [i === 0 ? 'settings' : '', t]),
      ['created', localTime(e.createdAt)],
      ['updated', localTime(e.updatedAt)],
      ...(e.clonedFromId ? [['cloned from', `${e.clonedFromId}${e.preview ? ' (preview)' : ''}`]] : []),
    ];
    ctx.out(...table(rows), '');
  });
  if (ctx.format === 'text') await printPipeline(ctx, environment.id);
}

export async function envClone(ctx: Context, ref: string, name: string, opts: { preview: boolean }): Promise<void> {
  const { environment: source } = await ctx.environment(ref);
  const response = await callUnary(ctx.clients.environments, 'cloneEnvironment', {
    sourceEnvironmentId: source.id,
    name,
    preview: opts.preview,
  });
  ctx.emit(control.CloneEnvironmentResponse.toJSON(response), () => {
    const e = response.environment!;
    ctx.out(
      `cloned ${source.project}/${source.name} into ${e.project}/${e.name} (${e.id})${opts.preview ? ' as a preview' : ''}:`,
      '',
    );
  });
  if (ctx.format === 'text') await printPipeline(ctx, response.environment!.id);
}

export async function pipelineCommand(ctx: Context, ref: string | undefined): Promise<void> {
  const { environment } = await ctx.environment(ref);
  const [{ pipeline }, services] = await Promise.all([
    callUnary(ctx.clients.pipelines, 'getPipeline', { environmentId: environment.id }),
    ctx.services(environment.id),
  ]);
  ctx.emit(control.GetPipelineResponse.toJSON({ pipeline }), () => {
    ctx.out(
      `${ctx.paint('bold', `${environment.project}/${environment.name}`)} pipeline (lower positions run first):`,
      '',
    );
    ctx.out(...pipelineRows(ctx, pipeline!, services));
  });
}

/** After a pipeline change: the response as data, or the new pipeline as a table. */
async function showPipelineResult(ctx: Context, environmentId: string, message: string, json: unknown): Promise<void> {
  ctx.emit(json, () => ctx.out(message, ''));
  if (ctx.format === 'text') await printPipeline(ctx, environmentId);
}

export async function stageCreate(
  ctx: Context,
  ref: string | undefined,
  name: string,
  opts: { description?: string; position?: string },
): Promise<void> {
  const { environment } = await ctx.environment(ref);
  const response = await callUnary(
    ctx.clients.pipelines,
    'createStage',
    control.CreateStageRequest.fromPartial({
      environmentId: environment.id,
      name,
      description: opts.description ?? '',
      ...(opts.position !== undefined ? { position: Number(opts.position) } : {}),
    }),
  );
  const stage = response.pipeline!.stages.find((s) => s.name === name);
  await showPipelineResult(
    ctx,
    environment.id,
    `created stage ${JSON.stringify(name)} at position ${stage?.order ?? '?'}`,
    control.CreateStageResponse.toJSON(response),
  );
}

export async function stageMove(
  ctx: Context,
  ref: string | undefined,
  stageRef: string,
  position: string,
): Promise<void> {
  const { environment, pipeline } = await ctx.environment(ref);
  const stage = ctx.stage(pipeline, stageRef);
  const response = await callUnary(ctx.clients.pipelines, 'moveStage', {
    environmentId: environment.id,
    stageId: stage.id,
    position: Number(position),
  });
  await showPipelineResult(
    ctx,
    environment.id,
    `moved stage ${JSON.stringify(stage.name)} from position ${stage.order} to ${position}`,
    control.MoveStageResponse.toJSON(response),
  );
}

export async function stageRename(
  ctx: Context,
  ref: string | undefined,
  stageRef: string,
  newName: string,
  opts: { description?: string },
): Promise<void> {
  const { environment, pipeline } = await ctx.environment(ref);
  const stage = ctx.stage(pipeline, stageRef);
  const response = await callUnary(
    ctx.clients.pipelines,
    'updateStage',
    control.UpdateStageRequest.fromPartial({
      environmentId: environment.id,
      stageId: stage.id,
      name: newName,
      ...(opts.description !== undefined ? { description: opts.description } : {}),
    }),
  );
  await showPipelineResult(
    ctx,
    environment.id,
    `renamed stage ${JSON.stringify(stage.name)} to ${JSON.stringify(newName)}`,
    control.UpdateStageResponse.toJSON(response),
  );
}

export async function stageDelete(
  ctx: Context,
  ref: string | undefined,
  stageRef: string,
  opts: { moveServicesTo?: string },
): Promise<void> {
  const { environment, pipeline } = await ctx.environment(ref);
  const stage = ctx.stage(pipeline, stageRef);
  const target = opts.moveServicesTo === undefined ? undefined : ctx.stage(pipeline, opts.moveServicesTo);
  const response = await callUnary(ctx.clients.pipelines, 'deleteStage', {
    environmentId: environment.id,
    stageId: stage.id,
    moveServicesToStageId: target?.id ?? '',
  });
  await showPipelineResult(
    ctx,
    environment.id,
    `deleted stage ${JSON.stringify(stage.name)}${target ? ` (its services moved to ${JSON.stringify(target.name)})` : ''}`,
    control.DeleteStageResponse.toJSON(response),
  );
}

export async function serviceList(ctx: Context, ref: string | undefined): Promise<void> {
  const { environment, pipeline } = await ctx.environment(ref);
  const services = await ctx.services(environment.id);
  ctx.emit(control.ListServicesResponse.toJSON({ services }), () => {
    const stageOf = new Map(pipeline.stages.map((s) => [s.id, s.name]));
    const rows = [['SERVICE', 'KIND', 'STAGE', 'SKIPPED', 'SOURCE', 'ENDPOINTS'].map((h) => ctx.paint('dim', h))];
    for (const s of services) {
      rows.push([
        s.name,
        kindName(s.kind),
        stageOf.get(s.stageId) ?? s.stageId,
        s.skipped ? ctx.paint('yellow', 'skipped') : '',
        sourceText(s),
        s.endpoints.map((e) => e.url).join(' '),
      ]);
    }
    ctx.out(...table(rows));
  });
}

export async function serviceMove(
  ctx: Context,
  ref: string | undefined,
  serviceRef: string,
  stageRef: string,
): Promise<void> {
  const { environment, pipeline } = await ctx.environment(ref);
  const service = await ctx.service(environment.id, serviceRef);
  const stage = ctx.stage(pipeline, stageRef);
  const response = await callUnary(ctx.clients.pipelines, 'moveService', {
    environmentId: environment.id,
    serviceId: service.id,
    stageId: stage.id,
  });
  await showPipelineResult(
    ctx,
    environment.id,
    `moved service ${service.name} to stage ${JSON.stringify(stage.name)}`,
    control.MoveServiceResponse.toJSON(response),
  );
}

export async function serviceSkip(
  ctx: Context,
  ref: string | undefined,
  serviceRef: string,
  skipped: boolean,
): Promise<void> {
  const { environment } = await ctx.environment(ref);
  const service = await ctx.service(environment.id, serviceRef);
  const response = await callUnary(ctx.clients.pipelines, 'setServiceSkipped', {
    environmentId: environment.id,
    serviceId: service.id,
    skipped,
  });
  ctx.emit(control.SetServiceSkippedResponse.toJSON(response), () =>
    ctx.out(
      skipped
        ? `service ${service.name} is skipped: environment-level deploy, redeploy, stop and restart leave it alone (service-level actions and environment delete still reach it).`
        : `service ${service.name} is no longer skipped.`,
    ),
  );
}

/** For each service, its latest appearance in the environment's recent runs. */
async function lastRuns(ctx: Context, environmentId: string) {
  const { deployments } = await callUnary(ctx.clients.deployments, 'listDeployments', {
    environmentId,
    pageSize: 50,
    pageToken: '',
  });
  const latest = new Map<string, { run: control.Deployment; service: control.ServiceRun }>();
  for (const run of deployments) {
    if (run.status === control.DeploymentStatus.DEPLOYMENT_STATUS_QUEUED) continue;
    for (const s of run.services) if (!latest.has(s.serviceId)) latest.set(s.serviceId, { run, service: s });
  }
  return { deployments, latest };
}

export async function statusCommand(ctx: Context, ref: string | undefined): Promise<void> {
  const { environment, pipeline } = await ctx.environment(ref);
  const [services, { deployments, latest }, running] = await Promise.all([
    ctx.services(environment.id),
    lastRuns(ctx, environment.id),
    runtimeOf(ctx, environment.id),
  ]);
  const last = deployments[0];
  ctx.emit(
    {
      environment: control.Environment.toJSON(environment),
      pipeline: control.Pipeline.toJSON(pipeline),
      services: services.map((s) => control.Service.toJSON(s)),
      lastDeployment: last ? control.Deployment.toJSON(last) : null,
      runtime: running ? [...running.values()].map((r) => deploy.ServiceRuntime.toJSON(r)) : null,
    },
    () => {
      const e = environment;
      ctx.out(
        `${ctx.paint('bold', `${e.project}/${e.name}`)}  ${ctx.paint(envStyle(e.status), envStatusName(e.status))}  ${ctx.paint('dim', `runtime ${e.runtime}${e.runtime === 'local' && e.settings?.deployHost ? ` on host ${e.settings.deployHost}` : ''}, id ${e.id}`)}`,
      );
      if (last) {
        const took = runElapsed(last, Date.now());
        ctx.out(
          `last run ${last.id}: ${control.actionToJSON(last.action).replace('ACTION_', '').toLowerCase()} ${ctx.paint(runStyle(last.status), runStatusName(last.status))}${
            took === undefined ? '' : ` (${duration(took)})`
          }, ${localTime(last.createdAt)}${last.message ? ` — ${last.message}` : ''}`,
        );
      } else {
        ctx.out('never deployed: stageline deploy --watch deploys it.');
      }
      ctx.out('');
      const byId = new Map(services.map((s) => [s.id, s]));
      const rows = [
        ['STAGE', 'SERVICE', 'STATE', 'RUNNING', 'INSTANCES', 'VERSION', 'ENDPOINTS', 'NOTE'].map((h) =>
          ctx.paint('dim', h),
        ),
      ];
      for (const stage of pipeline.stages) {
        stage.serviceIds.forEach((id, i) => {
          const s = byId.get(id);
          if (!s) return;
          const seen = latest.get(id)?.service;
          rows.push([
            i === 0 ? ctx.paint('bold', stage.name) : '',
            s.name,
            seen ? ctx.paint(stateStyle(seen.status), stateName(seen.status)) : ctx.paint('dim', 'never deployed'),
            ...runtimeColumns(ctx, running?.get(id), running !== undefined),
            seen?.version ?? '',
            s.endpoints.map((x) => x.url).join(' '),
            s.skipped ? ctx.paint('yellow', 'skipped') : '',
          ]);
        });
      }
      ctx.out(...table(rows));
    },
  );
}
