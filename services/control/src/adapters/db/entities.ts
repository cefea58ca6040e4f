import { defineEntity, p } from '@mikro-orm/core';
import type { control } from '@stageline/proto';
import type { Settings } from '../../domain/environment.ts';
import type { ServiceDefinition } from '../../domain/service-spec.ts';

// Rows of schema `control`. Foreign keys are plain uuid columns: the store always loads a whole
// environment aggregate, so relation mapping would only add lazy-loading surprises.

const EnvironmentSchema = defineEntity({
  name: 'EnvironmentRow',
  tableName: 'environment',
  properties: {
    id: p.uuid().primary(),
    project: p.text(),
    name: p.text(),
    runtime: p.text(),
    preview: p.boolean(),
    clonedFromId: p.uuid().nullable(),
    settings: p.json<Settings>(),
    /** The resolved namespace (unique among live environments); null for rows not yet assigned one. */
    namespace: p.text().nullable(),
    status: p.integer(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});
export class EnvironmentRow extends EnvironmentSchema.class {}
EnvironmentSchema.setClass(EnvironmentRow);

const StageSchema = defineEntity({
  name: 'StageRow',
  tableName: 'stage',
  properties: {
    id: p.uuid().primary(),
    environmentId: p.uuid(),
    name: p.text(),
    description: p.text(),
    position: p.integer(),
    defaultFor: p.text().nullable(),
  },
});
export class StageRow extends StageSchema.class {}
StageSchema.setClass(StageRow);

const ServiceSchema = defineEntity({
  name: 'ServiceRow',
  tableName: 'service',
  properties: {
    id: p.uuid().primary(),
    environmentId: p.uuid(),
    stageId: p.uuid(),
    /** 0-based place within its stage, dense per stage. */
    position: p.integer(),
    name: p.text(),
    kind: p.text(),
    skipped: p.boolean(),
    definition: p.json<ServiceDefinition>(),
    secrets: p.json<Record<string, string>>(),
    hasResources: p.boolean(),
    endpoints: p.json<control.Endpoint[]>(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});
export class ServiceRow extends ServiceSchema.class {}
ServiceSchema.setClass(ServiceRow);

export const entities = [EnvironmentSchema, StageSchema, ServiceSchema];
