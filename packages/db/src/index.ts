// What services need to define entities and lock rows without depending on MikroORM packages themselves.
export { defineEntity, LockMode, p } from '@mikro-orm/core';
export {
  type Database,
  type EntityManager,
  MIGRATIONS_TABLE,
  type MikroORM,
  type OpenDatabaseOptions,
  openDatabase,
} from './database.ts';
export { isUniqueViolation, UNIQUE_VIOLATION } from './errors.ts';
export { idTime, newId } from './ids.ts';
export { type DbMigration, type SqlRunner, sqlMigration } from './migrations.ts';
export {
  enqueue,
  insertOutbox,
  OUTBOX_INSERT,
  OUTBOX_SET_ASIDE_TABLE,
  OUTBOX_TABLE,
  type OutboxEntry,
  OutboxMessage,
  outboxMigration,
  outboxRows,
  outboxSetAsideMigration,
} from './outbox.ts';
export {
  listSetAside,
  type OutboxPublish,
  OutboxRelay,
  type OutboxRelayOptions,
  type SetAsideRow,
} from './outbox-relay.ts';
export { numberPlaceholders, query } from './query.ts';
export { type DbRetryOptions, DEFAULT_DB_RETRY, isTransientDbError, withDbRetry } from './retry.ts';
