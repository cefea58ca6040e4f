import { type DbMigration, outboxMigration, sqlMigration } from '@stageline/db';

// Schema `deploy`. Never edit an applied migration: add the next one.
// Ids from other services (service, environment, deployment, job) are text: this schema only records them.
export const migrations: DbMigration[] = [
  outboxMigration,
  sqlMigration('deploy-0001-releases', [
    `create table release (
      id uuid primary key,
      service_id text not null,
      service_name text not null,
      environment_id text not null,
      revision integer not null check (revision >= 1),
      deployment_id text not null,
      job_id text not null,
      runtime text not null,
      namespace text not null default '',
      kube_context text not null default '',
      image text not null,
      digest text not null default '',
      version text not null default '',
      config_hash text not null default '',
      chart_path text not null default '',
      status text not null check (status in
        ('DEPLOYING', 'DEPLOYED', 'FAILED', 'SUPERSEDED', 'ROLLED_BACK', 'STOPPED', 'DELETED')),
      message text not null default '',
      host_ports jsonb not null default '[]',
      endpoints jsonb not null default '[]',
      readiness_timeout_seconds integer not null default 300,
      runtime_revision integer not null default 0,
      created_at timestamptz not null,
      updated_at timestamptz not null,
      constraint release_service_revision_key unique (service_id, revision),
      -- One release per deploy job: a redelivered job finds its release instead of making another.
      constraint release_job_key unique (job_id)
    )`,
    `create index release_environment_idx on release (environment_id)`,
    // A finished job's outcome, whatever its action: a redelivery answers it without touching the runtime.
    `create table job_result (
      job_id text primary key,
      service_id text not null,
      action integer not null,
      result jsonb not null,
      created_at timestamptz not null
    )`,
    // Host ports on 127.0.0.1 handed to public ports of local services; unique across the host's services.
    `create table host_port (
      port integer primary key check (port between 1 and 65535),
      service_id text not null,
      environment_id text not null,
      container_port integer not null,
      created_at timestamptz not null,
      constraint host_port_service_port_key unique (service_id, container_port)
    )`,
  ]),
  sqlMigration('deploy-0002-kinds-credentials-cron', [
    // What the release runs: CONTAINER, APPLICATION, DATABASE, LIFECYCLE_JOB, CRON_JOB, MANAGED_DATABASE,
    // CUSTOM_CHART ('' for releases made before kinds were recorded: workloads).
    `alter table release add column kind text not null default ''`,
    // CRON_JOB: its schedule, read by the local scheduler.
    `alter table release add column schedule text not null default ''`,
    `create index release_live_cron_idx on release (runtime, kind, status) where kind = 'CRON_JOB'`,
    // A database's user, password and database name: made once, kept across revisions (its data was
    // initialized with them), removed by DELETE.
    `create table database_credential (
      service_id text primary key,
      environment_id text not null,
      username text not null,
      password text not null,
      database text not null,
      created_at timestamptz not null
    )`,
    // One row per cron tick that ran on the local runtime: the unique (service, tick) is the claim that
    // makes a tick run exactly once across every deploy process.
    `create table cron_tick (
      id uuid primary key,
      service_id text not null,
      environment_id text not null,
      tick timestamptz not null,
      release_id uuid not null,
      revision integer not null,
      status text not null check (status in ('RUNNING', 'SUCCEEDED', 'FAILED')),
      exit_code integer not null default 0,
      message text not null default '',
      log jsonb not null default '[]',
      owner text not null,
      started_at timestamptz not null,
      heartbeat_at timestamptz not null,
      finished_at timestamptz,
      constraint cron_tick_service_tick_key unique (service_id, tick)
    )`,
    `create index cron_tick_running_idx on cron_tick (heartbeat_at) where status = 'RUNNING'`,
  ]),
  // Charts in the database, not on one worker's disk: any worker of the environment's host (or its
  // replacement) redeploys, restarts and rolls back from them. Sensitive files hold sealed envelopes.
  sqlMigration('deploy-0003-chart-files', [
    `create table chart_file (
      id uuid primary key,
      environment_id text not null,
      service_id text not null,
      revision integer not null check (revision >= 1),
      path text not null,
      content text not null,
      sensitive boolean not null,
      constraint chart_file_key unique (environment_id, service_id, revision, path)
    )`,
    `create index chart_file_service_idx on chart_file (service_id)`,
  ]),
];
