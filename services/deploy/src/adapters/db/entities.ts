import { defineEntity, p } from '@stageline/db';
import type { Endpoint, HostPortBinding } from '../../domain/release.ts';

// Rows of schema `deploy` (see migrations.ts for constraints).

const ReleaseSchema = defineEntity({
  name: 'ReleaseRow',
  tableName: 'release',
  properties: {
    id: p.uuid().primary(),
    serviceId: p.text(),
    serviceName: p.text(),
    environmentId: p.text(),
    revision: p.integer(),
    deploymentId: p.text(),
    jobId: p.text(),
    runtime: p.text(),
    namespace: p.text(),
    kubeContext: p.text(),
    image: p.text(),
    digest: p.text(),
    version: p.text(),
    configHash: p.text(),
    chartPath: p.text(),
    status: p.text(),
    message: p.text(),
    hostPorts: p.json<HostPortBinding[]>(),
    endpoints: p.json<Endpoint[]>(),
    readinessTimeoutSeconds: p.integer(),
    runtimeRevision: p.integer(),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});
export class ReleaseRow extends ReleaseSchema.class {}
ReleaseSchema.setClass(ReleaseRow);

const JobResultSchema = defineEntity({
  name: 'JobResultRow',
  tableName: 'job_result',
  properties: {
    jobId: p.text().primary(),
    serviceId: p.text(),
    action: p.integer(),
    result: p.json<unknown>(),
    createdAt: p.datetime(),
  },
});
export class JobResultRow extends JobResultSchema.class {}
JobResultSchema.setClass(JobResultRow);

const HostPortSchema = defineEntity({
  name: 'HostPortRow',
  tableName: 'host_port',
  properties: {
    port: p.integer().primary().autoincrement(false),
    serviceId: p.text(),
    environmentId: p.text(),
    containerPort: p.integer(),
    createdAt: p.datetime(),
  },
});
export class HostPortRow extends HostPortSchema.class {}
HostPortSchema.setClass(HostPortRow);

export const entities = [ReleaseSchema, JobResultSchema, HostPortSchema];
