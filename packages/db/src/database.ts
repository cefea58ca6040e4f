import type { AnyEntity, EntityClass, EntitySchema } from '@mikro-orm/core';
import { Migrator } from '@mikro-orm/migrations';
import { type EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { RetryPolicy } from '@stageline/errors';
import type { Logger } from '@stageline/log';
import { metrics } from '@stageline/telemetry';
import type { Pool } from 'pg';
import { assertSchemaName, connectCreatingDatabase, ensureSchema, LOCK_MIGRATE, lockKey } from './admin.ts';
import { type DbMigration, toMigrationsList } from './migrations.ts';
import { PinoOrmLogger } from './orm-logger.ts';
import { OutboxMessage } from './outbox.ts';
import { guardPool } from './pool-guard.ts';
import { withDbRetry } from './retry.ts';

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
  /** How `Database.retry` retries transient faults (default `DEFAULT_DB_RETRY`: about 30 s). */
  retry?: Partial<RetryPolicy>;
}

export interface Database {
  readonly orm: MikroORM;
  /** A fresh EntityManager fork: one per unit of work (request, message, loop turn). */
  em(): EntityManager;
  /**
   * Runs a unit of work under the database retry policy (`withDbRetry`): a lost connection, a restart
   * of the server, a serialization failure are retried with backoff inside the deadline, each attempt
   * with a fresh EntityManager; past it, a DomainError UNAVAILABLE naming `what`. The work must be safe
   * to run again (a read, or a whole transaction that looks before it writes).
   */
  retry<T>(what: string, work: (em: EntityManager) => Promise<T>): Promise<T>;
  /** `select 1` within `timeoutMs` (default 2 s): false when the database cannot answer. Never throws. */
  ping(timeoutMs?: number): Promise<boolean>;
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
      driverOptions: {
        options: `-c search_path=${schema},public`,
        application_name: applicationName,
        // A connection lost mid-transaction goes back to the pool (pool-guard.ts).
        onPoolCreated: (pool: Pool) => guardPool(pool),
      },
      migrations: {
        migrationsList: toMigrationsList(options.migrations, schema),
        tableName: MIGRATIONS_TABLE,
        // Migrations are code, not generated from entity diffs: no snapshot files on disk.
        snapshot: false,
        transactional: true,
        allOrNothing: true,
      },
      loggerFactory: (o) => new PinoOrmLogger(dbLog, o),
      // Every statement the ORM sends (its queries, em.execute) is counted; query() counts its own.
      onQuery: (sql: string) => {
        metrics.dbStatements.inc({ schema });
        return sql;
      },
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
      retry: (what, work) =>
        withDbRetry(() => work(opened.em.fork()), {
          what: `${schema}: ${what}`,
          log: dbLog,
          ...(options.retry !== undefined ? { policy: options.retry } : {}),
        }),
      ping: (timeoutMs = 2_000) => ping(opened, timeoutMs),
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

async function ping(orm: MikroORM, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    return await Promise.race([
      orm.em
        .fork()
        .execute('select 1')
        .then(() => true),
      timeout,
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
