import { type DbMigration, outboxMigration, outboxSetAsideMigration, sqlMigration } from '@stageline/db';

export const migrations: DbMigration[] = [
  outboxMigration,
  sqlMigration('planner-0001-runs', [
    // One row per environment, locked FOR UPDATE by every change to its runs: one writer per environment.
    `create table lane (
      environment_id uuid primary key,
      deleted boolean not null default false
    )`,
    `create table deployment (
      id uuid primary key,
      environment_id uuid not null,
      action text not null,
      status text not null,
      requester text not null,
      service_ids jsonb not null,
      version text not null,
      force_build boolean not null,
      to_deployment_id uuid null,
      state jsonb null,
      snapshot jsonb null,
      message text not null default '',
      created_at timestamptz not null,
      started_at timestamptz null,
      finished_at timestamptz null
    )`,
    `create index deployment_environment_idx on deployment (environment_id, created_at desc, id desc)`,
    `create index deployment_open_idx on deployment (environment_id, created_at) where status in ('QUEUED', 'RUNNING', 'CANCELING')`,
    `create table request_key (
      request_id text primary key,
      deployment_id uuid not null
    )`,
    `create table service_status (
      service_id uuid primary key,
      environment_id uuid not null,
      has_resources boolean not null,
      stopped boolean not null,
      version text not null,
      image text not null,
      state text not null,
      updated_at timestamptz not null
    )`,
    `create index service_status_environment_idx on service_status (environment_id)`,
  ]),
  sqlMigration('planner-0002-service-outputs', [
    `alter table service_status add column outputs jsonb not null default '{}'`,
  ]),
  // The sequence of a run's latest event (DeploymentEvent.sequence): readers of deltas find gaps by it.
  sqlMigration('planner-0003-event-sequence', [
    `alter table deployment add column event_sequence integer not null default 0`,
  ]),
  // What a run was asked beyond action, scope and version: per-service versions, the run it resumes,
  // whether a rollback runs lifecycle jobs (domain/model.ts RunOptions).
  sqlMigration('planner-0004-run-options', [`alter table deployment add column options jsonb not null default '{}'`]),
  // Rows the outbox relay cannot publish, set aside with the reason (@stageline/db).
  outboxSetAsideMigration,
  // A run's state as rows: each service run its own row (a job report writes only the services it
  // changed); `deployment.state` keeps the run's compact header (its `services` empty). Runs written
  // before move over here.
  sqlMigration('planner-0005-service-runs', [
    `create table service_run (
      deployment_id uuid not null,
      position integer not null,
      service_id uuid not null,
      run jsonb not null,
      primary key (deployment_id, position)
    )`,
    `insert into service_run (deployment_id, position, service_id, run)
       select d.id, e.ordinality - 1, (e.value->>'serviceId')::uuid, e.value
       from deployment d, jsonb_array_elements(d.state->'services') with ordinality e
       where d.state is not null and jsonb_typeof(d.state->'services') = 'array'`,
    `update deployment set state = jsonb_set(state, '{services}', '[]'::jsonb)
       where state is not null and jsonb_typeof(state->'services') = 'array'`,
  ]),
];
