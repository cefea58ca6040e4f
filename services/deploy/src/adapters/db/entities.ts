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
    kind: p.text(),
    schedule: p.text(),
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

const CredentialSchema = defineEntity({
  name: 'DatabaseCredentialRow',
  tableName: 'database_credential',
  properties: {
    serviceId: p.text().primary(),
    environmentId: p.text(),
    username: p.text(),
    password: p.text(),
    database: p.text(),
    createdAt: p.datetime(),
  },
});
export class DatabaseCredentialRow extends CredentialSchema.class {}
CredentialSchema.setClass(DatabaseCredentialRow);

const CronTickSchema = defineEntity({
  name: 'CronTickRow',
  tableName: 'cron_tick',
  properties: {
    id: p.uuid().primary(),
    serviceId: p.text(),
    environmentId: p.text(),
    tick: p.datetime(),
    releaseId: p.uuid(),
    revision: p.integer(),
    status: p.text(),
    exitCode: p.integer(),
    message: p.text(),
    log: p.json<string[]>(),
    owner: p.text(),
    startedAt: p.datetime(),
    heartbeatAt: p.datetime(),
    finishedAt: p.datetime().nullable(),
  },
});
export class CronTickRow extends CronTickSchema.class {}
CronTickSchema.setClass(CronTickRow);

export const entities = [ReleaseSchema, JobResultSchema, HostPortSchema, CredentialSchema, CronTickSchema];
