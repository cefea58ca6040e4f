import { defineEntity, p } from '@stageline/db';
import type { RunOptions, RunState } from '../../domain/model.ts';

// Schema `planner`. The pure core reads and writes a run's progress as one value (RunState); it is kept
// as the run's header (`state`, its services empty) and a `service_run` row per service run
// (planner-0005), and every change happens under the environment's lane lock. The run store
// (run-store.ts) reads and writes these tables with its own SQL; the classes describe the schema.

const DeploymentSchema = defineEntity({
  name: 'DeploymentRow',
  tableName: 'deployment',
  properties: {
    id: p.uuid().primary(),
    environmentId: p.uuid(),
    action: p.text(),
    status: p.text(),
    requester: p.text(),
    serviceIds: p.json<string[]>(),
    version: p.text(),
    forceBuild: p.boolean(),
    toDeploymentId: p.uuid().nullable(),
    /** Per-service versions, the run it resumes, a rollback's lifecycle jobs. */
    options: p.json<RunOptions>(),
    /** Null while QUEUED: a run is planned when it starts, on the snapshot it keeps. */
    state: p.json<RunState>().nullable(),
    /**
     * The environment snapshot the run works from (proto JSON, secrets sealed): while QUEUED, the
     * environment as its latest request saw it (null when an older version queued it); once started,
     * the environment and the service definitions it deploys.
     */
    snapshot: p.json<unknown>().nullable(),
    message: p.text(),
    /** The sequence of the run's latest event (DeploymentEvent.sequence). */
    eventSequence: p.integer(),
    createdAt: p.datetime(),
    startedAt: p.datetime().nullable(),
    finishedAt: p.datetime().nullable(),
  },
});
export class DeploymentRow extends DeploymentSchema.class {}
DeploymentSchema.setClass(DeploymentRow);

const ServiceStatusSchema = defineEntity({
  name: 'ServiceStatusRow',
  tableName: 'service_status',
  properties: {
    serviceId: p.uuid().primary(),
    environmentId: p.uuid(),
    hasResources: p.boolean(),
    stopped: p.boolean(),
    version: p.text(),
    image: p.text(),
    /** The service's state after the last run that touched it (ServiceState name). */
    state: p.text(),
    /** What its last deploy produced for later stages; injected until it deploys again. */
    outputs: p.json<Record<string, string>>(),
    updatedAt: p.datetime(),
  },
});
export class ServiceStatusRow extends ServiceStatusSchema.class {}
ServiceStatusSchema.setClass(ServiceStatusRow);

const RequestKeySchema = defineEntity({
  name: 'RequestKeyRow',
  tableName: 'request_key',
  properties: {
    requestId: p.text().primary(),
    deploymentId: p.uuid(),
  },
});
export class RequestKeyRow extends RequestKeySchema.class {}
RequestKeySchema.setClass(RequestKeyRow);

export const entities = [DeploymentSchema, ServiceStatusSchema, RequestKeySchema];
