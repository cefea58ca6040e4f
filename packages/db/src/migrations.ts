import type { Constructor, MigrationObject } from '@mikro-orm/core';
import { Migration } from '@mikro-orm/migrations';

/** What a migration gets to change the database. Everything runs inside the migration's transaction. */
export interface SqlRunner {
  /** The service's schema: the connection's `search_path` starts with it, so unqualified names land there. */
  readonly schema: string;
  /** Runs one statement now and returns its rows. Parameters are `?` placeholders. */
  execute(sql: string, params?: readonly unknown[]): Promise<Record<string, unknown>[]>;
}

/**
 * A migration as code. `name` is recorded in `<schema>.mikro_orm_migrations` once applied, so never rename
 * or edit an applied migration: add a new one. Order is the order of the list given to `openDatabase`.
 */
export interface DbMigration {
  readonly name: string;
  up(sql: SqlRunner): void | Promise<void>;
  down?(sql: SqlRunner): void | Promise<void>;
}

/** Migration helper for the common case: a fixed list of statements (run in order). */
export function sqlMigration(name: string, up: readonly string[], down?: readonly string[]): DbMigration {
  return {
    name,
    async up(sql) {
      for (const statement of up) {
        await sql.execute(statement);
      }
    },
    ...(down
      ? {
          async down(sql: SqlRunner) {
            for (const statement of down) {
              await sql.execute(statement);
            }
          },
        }
      : {}),
  };
}

/** Adapts our migrations to MikroORM's `migrationsList` (class-based, so no files are looked up on disk). */
export function toMigrationsList(migrations: readonly DbMigration[], schema: string): MigrationObject[] {
  const seen = new Set<string>();
  return migrations.map((m) => {
    if (seen.has(m.name)) {
      throw new Error(`duplicate migration name "${m.name}"`);
    }
    seen.add(m.name);
    class CodeMigration extends Migration {
      runner(): SqlRunner {
        return {
          schema,
          execute: (sql, params) => this.execute(sql, params ? [...params] : undefined),
        };
      }
      override async up(): Promise<void> {
        await m.up(this.runner());
      }
      override async down(): Promise<void> {
        if (!m.down) {
          throw new Error(`migration "${m.name}" cannot be reverted`);
        }
        await m.down(this.runner());
      }
    }
    return { name: m.name, class: CodeMigration as unknown as Constructor<Migration> };
  });
}
