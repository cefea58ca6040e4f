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
];
