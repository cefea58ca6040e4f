import type { AnyEntity, EntityClass, EntitySchema } from '@mikro-orm/core';
import { Migrator } from '@mikro-orm/migrations';
import { type EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from '@stageline/log';
import { assertSchemaName, connectCreatingDatabase, ensureSchema, LOCK_MIGRATE, lockKey } from './admin.ts';
import { type DbMigration, toMigrationsList } from './migrations.ts';
import { PinoOrmLogger } from './orm-logger.ts';
import { OutboxMessage } from './outbox.ts';

export type { EntityManager, MikroORM } from '@mikro-orm/postgresql';

/** Where the applied-migrations table lives (inside the service's schema). */
export const MIGRATIONS_TABLE = 'mikro_orm_migrations';

export interface OpenDatabaseOptions {
  /** `postgres://user:pass@host:port/dbname`; the database is created if it does not exist. */
  url: string;
  /** The service's own schema (lowercase identifier); created if missing; holds its tables and migrations. */
  schema: string;
  /** Entities (`defineEntity` classes or schemas). `OutboxMessage` is always added (its table comes from `outboxMigration`). */
  entities: readonly (EntitySchema | EntityClass<AnyEntity>)[];
  /** Applied in list order, each once, under an advisory lock; include `outboxMigration` when using the outbox. */
  migrations: readonly DbMigration[];
  log: Logger;
  /** Pool size of this process (default 10). */
  poolMax?: number;
  /** Shown in pg_stat_activity (default `stageline-<schema>`). */
  applicationName?: string;
}

export interface Database {
  readonly orm: MikroORM;
  /** A fresh EntityManager fork: one per unit of work (request, message, loop turn). */
  em(): EntityManager;
  /** Closes the pool. Idempotent. */
  close(): Promise<void>;
  readonly url: string;
  readonly schema: string;
  /** Migrations this call applied (empty when another process, or an earlier start, already had). */
  readonly appliedMigrations: readonly string[];
}

/**
 * Opens the service's database: creates the database and schema if needed, connects MikroORM with the
 * schema as default (and first on the search_path, so raw SQL and migrations need no qualification),
 * and applies pending migrations. Several processes may start at once: one applies, the others wait for
 * the advisory lock and then find nothing pending.
 */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  const { url, schema, log } = options;
  assertSchemaName(schema);
  const applicationName = options.applicationName ?? `stageline-${schema}`;
  const dbLog = log.child({ component: 'db', schema });

  const admin = await connectCreatingDatabase(url, `${applicationName}-migrate`);
  let orm: MikroORM | undefined;
  try {
    // Session lock: held across schema creation, the migrator's own table creation and every migration.
    await admin.query('select pg_advisory_lock($1, $2)', [LOCK_MIGRATE, lockKey(schema)]);
    await ensureSchema(admin, schema);

    orm = await MikroORM.init({
      clientUrl: url,
      schema,
      // Registered even when a service lists it too, or lists nothing else: enqueue() must always work.
      entities: [...new Set([...options.entities, OutboxMessage])],
      extensions: [Migrator],
      // The database exists by now; we create it ourselves so concurrent starts are tolerated.
      ensureDatabase: false,
      pool: { max: options.poolMax ?? 10 },
      // pg Pool options: every connection resolves unqualified names in the service's schema first.
      driverOptions: { options: `-c search_path=${schema},public`, application_name: applicationName },
      migrations: {
        migrationsList: toMigrationsList(options.migrations, schema),
        tableName: MIGRATIONS_TABLE,
        // Migrations are code, not generated from entity diffs: no snapshot files on disk.
        snapshot: false,
        transactional: true,
        allOrNothing: true,
      },
      loggerFactory: (o) => new PinoOrmLogger(dbLog, o),
      debug: dbLog.isLevelEnabled('debug') ? ['query', 'info'] : false,
      colors: false,
    });

    const applied = (await orm.migrator.up()).map((m) => m.name);
    if (applied.length > 0) {
      dbLog.info({ migrations: applied }, 'migrations applied');
    }
    await admin.query('select pg_advisory_unlock($1, $2)', [LOCK_MIGRATE, lockKey(schema)]);

    const opened = orm;
    let closed: Promise<void> | undefined;
    return {
      orm: opened,
      em: () => opened.em.fork(),
      close: () => {
        closed ??= opened.close();
        return closed;
      },
      url,
      schema,
      appliedMigrations: applied,
    };
  } catch (e) {
    await orm?.close().catch(() => {});
    throw e;
  } finally {
    // Ending the session also releases the lock if we failed before unlocking.
    await admin.end().catch(() => {});
  }
}
