import { resolveNamespace } from '@stageline/policy';
import type { control } from '@stageline/proto';
import { NO_AUTO_DEPLOY_SETTINGS } from '../domain/auto-deploy.ts';
import { exposureView } from '../domain/environment.ts';
import { Kind } from '../domain/kinds.ts';
import { servicesOf } from '../domain/pipeline.ts';
import type { EnvironmentAggregate, EnvironmentRecord, ServiceRecord } from './model.ts';

// Records → API messages. Secret values never leave through here.

export function environmentView(env: EnvironmentRecord): control.Environment {
  return {
    id: env.id,
    project: env.project,
    name: env.name,
    runtime: env.runtime,
    preview: env.preview,
    clonedFromId: env.clonedFromId,
    settings: {
      maxParallelBuilds: env.settings.maxParallelBuilds,
      maxParallelDeploys: env.settings.maxParallelDeploys,
      schedulingMode: env.settings.schedulingMode,
      mirrorMode: env.settings.mirrorMode,
      kubernetesContext: env.settings.kubernetesContext,
      namespace: resolveNamespace(env.project, env.name, env.settings.namespace),
      exposure: exposureView(env.settings.exposure),
      autoDeploy: env.settings.autoDeploy ?? NO_AUTO_DEPLOY_SETTINGS,
      deployHost: env.settings.deployHost ?? '',
    },
    status: env.status,
    createdAt: env.createdAt,
    updatedAt: env.updatedAt,
  };
}

export function pipelineView(aggregate: EnvironmentAggregate): control.Pipeline {
  const { pipeline } = aggregate;
  return {
    environmentId: aggregate.environment.id,
    stages: pipeline.stages.map((stage, order) => ({
      id: stage.id,
      name: stage.name,
      description: stage.description,
      order,
      serviceIds: servicesOf(pipeline, stage.id).map((s) => s.id),
    })),
  };
}

export function serviceView(aggregate: EnvironmentAggregate, service: ServiceRecord): control.Service {
  const d = service.definition;
  const placed = aggregate.pipeline.services.find((s) => s.id === service.id);
  return {
    id: service.id,
    environmentId: aggregate.environment.id,
    name: d.name,
    kind: Kind[d.kind],
    stageId: placed?.stageId ?? '',
    skipped: service.skipped,
    source: d.source,
    buildResources: d.buildResources,
    envVars: d.envVars.map((v) => (v.secret ? { ...v, value: '' } : v)),
    readinessTimeoutSeconds: d.readinessTimeoutSeconds,
    healthCheck: d.healthCheck,
    strategy: d.strategy,
    chart: d.chart,
    autoDeploy: d.autoDeploy,
    endpoints: service.endpoints,
    createdAt: service.createdAt,
    updatedAt: service.updatedAt,
  };
}

/** Services in pipeline order: by stage, then by their position within it. */
export function servicesInOrder(aggregate: EnvironmentAggregate): ServiceRecord[] {
  const byId = new Map(aggregate.services.map((s) => [s.id, s]));
  return aggregate.pipeline.stages.flatMap((stage) =>
    servicesOf(aggregate.pipeline, stage.id).flatMap((p) => byId.get(p.id) ?? []),
  );
}
