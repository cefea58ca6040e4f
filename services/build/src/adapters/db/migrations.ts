import { type DbMigration, outboxMigration, sqlMigration } from '@stageline/db';

// Schema `build`. Never edit an applied migration: add the next one.
export const migrations: DbMigration[] = [
  outboxMigration,
  sqlMigration('build-0001-mirror-entries', [
    // One row per image the mirror holds under a tag: where it came from and what digest it has.
    // The repository columns let a later mirror of the same source find blobs to mount.
    `create table mirror_entry (
      id uuid primary key,
      source_ref text not null,
      source_repository text not null,
      source_digest text not null,
      destination_ref text not null,
      destination_repository text not null,
      digest text not null,
      created_at timestamptz not null default now(),
      unique (destination_ref, digest)
    )`,
    `create index mirror_entry_source_repository_idx on mirror_entry (source_repository, created_at desc)`,
  ]),
  sqlMigration('build-0002-builds-and-cache-keys', [
    // Every cache key ever computed, with the inputs it was computed from (digests; values only where
    // they may be shown): what explains a hit or a rebuild later.
    `create table cache_key (
      key text primary key,
      repository text not null,
      tag text not null,
      inputs jsonb not null,
      created_at timestamptz not null default now()
    )`,
    // One row per GIT build job attempt: its key, outcome and image. A service's previous build is
    // the one an explanation compares with.
    `create table build (
      id uuid primary key,
      job_id text not null,
      deployment_id text not null,
      environment_id text not null,
      service_id text not null,
      attempt integer not null,
      git_url text not null,
      commit text not null default '',
      cache_key text references cache_key (key),
      image text not null default '',
      cache_hit boolean not null default false,
      status text not null,
      message text not null default '',
      started_at timestamptz not null default now(),
      finished_at timestamptz
    )`,
    `create index build_service_idx on build (service_id, started_at desc)`,
    `create index build_deployment_idx on build (deployment_id, service_id, started_at desc)`,
  ]),
];
