import { type DbMigration, outboxMigration, outboxSetAsideMigration, sqlMigration } from '@stageline/db';

// Schema `control`. Never edit an applied migration: add the next one.
// Foreign keys are checked at commit: rows are plain columns to MikroORM, so it does not order
// inserts and deletes by reference.
export const migrations: DbMigration[] = [
  outboxMigration,
  sqlMigration('control-0001-environments', [
    `create table environment (
      id uuid primary key,
      project text not null,
      name text not null,
      runtime text not null,
      preview boolean not null default false,
      cloned_from_id uuid null,
      settings jsonb not null,
      status integer not null,
      created_at timestamptz not null,
      updated_at timestamptz not null
    )`,
    // A deleted environment frees its name.
    `create unique index environment_project_name_key on environment (project, name) where status <> 10`,
    `create table stage (
      id uuid primary key,
      environment_id uuid not null references environment (id) on delete cascade deferrable initially deferred,
      name text not null,
      description text not null default '',
      position integer not null check (position >= 0),
      default_for text null,
      -- Reordering rewrites several positions in one transaction: check at commit, not per row.
      constraint stage_position_key unique (environment_id, position) deferrable initially deferred,
      constraint stage_name_key unique (environment_id, name) deferrable initially deferred
    )`,
    `create table service (
      id uuid primary key,
      environment_id uuid not null references environment (id) on delete cascade deferrable initially deferred,
      stage_id uuid not null references stage (id) deferrable initially deferred,
      name text not null,
      kind text not null,
      skipped boolean not null default false,
      definition jsonb not null,
      secrets jsonb not null default '{}',
      has_resources boolean not null default false,
      endpoints jsonb not null default '[]',
      created_at timestamptz not null,
      updated_at timestamptz not null,
      constraint service_name_key unique (environment_id, name) deferrable initially deferred
    )`,
    `create index service_environment_idx on service (environment_id, id)`,
    `create index stage_environment_idx on stage (environment_id, position)`,
  ]),
  // A service's place within its stage, dense per stage. Existing rows keep the order they were
  // listed in until now: by id (UUIDv7, so creation order) within each stage.
  sqlMigration('control-0002-service-position', [
    `alter table service add column position integer`,
    `update service set position = ranked.position
       from (select id, (row_number() over (partition by stage_id order by id) - 1)::integer as position
               from service) as ranked
      where service.id = ranked.id`,
    `alter table service alter column position set not null`,
    `alter table service add constraint service_position_check check (position >= 0)`,
    // Moving a service renumbers others in the same transaction: check at commit, not per row.
    `alter table service add constraint service_position_key unique (stage_id, position) deferrable initially deferred`,
  ]),
  // API tokens: the SHA-256 of the secret only. A name is unique among tokens not revoked.
  sqlMigration('control-0003-api-tokens', [
    `create table api_token (
      id uuid primary key,
      name text not null,
      role text not null check (role in ('ROLE_VIEWER', 'ROLE_DEPLOYER', 'ROLE_ADMIN')),
      projects text[] not null default '{}',
      secret_hash text not null,
      created_at timestamptz not null,
      expires_at timestamptz null,
      revoked_at timestamptz null,
      created_by text not null
    )`,
    `create unique index api_token_live_name_key on api_token (name) where revoked_at is null`,
  ]),
  // The namespace an environment deploys into (its setting, else the default rule of @stageline/policy),
  // unique among live environments: no two environments share one (issue 21). Rows of before are
  // filled in at start by the store (assignNamespaces), with the rule in TypeScript, its one place.
  sqlMigration('control-0004-environment-namespace', [
    `alter table environment add column namespace text null`,
    `create unique index environment_namespace_key on environment (namespace) where status <> 10 and namespace is not null`,
  ]),
  // Rows the outbox relay cannot publish, set aside with the reason (@stageline/db).
  outboxSetAsideMigration,
  // Auto-deploy (issue 15): each environment's webhook secret, sealed; and what the pollers last saw
  // of each service's source (a branch's commit, a tag), so that a restart does not deploy again.
  sqlMigration('control-0005-auto-deploy', [
    `create table webhook_secret (
      environment_id uuid primary key references environment (id) on delete cascade,
      secret text not null,
      rotated_at timestamptz not null
    )`,
    `create table auto_deploy_seen (
      service_id uuid primary key references service (id) on delete cascade deferrable initially deferred,
      seen text not null,
      seen_at timestamptz not null
    )`,
  ]),
];
