// PostgreSQL activity of the stack's own database (pg_stat_database), through psql: transactions and
// rows touched per run. Backends publish their counters at most once a second, so a sample taken right
// after a run may miss the last second's work: figures are approximate (and say so).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface DbActivity {
  commits: number;
  rollbacks: number;
  rowsFetched: number;
  rowsReturned: number;
  rowsInserted: number;
  rowsUpdated: number;
  rowsDeleted: number;
  /**
   * Statements, approximated from the tables' counters (pg_stat_user_tables; pg_stat_statements is not
   * loaded on the shared server): table scans (every select, update and delete does at least one) plus
   * rows inserted (one insert statement may write several).
   */
  statements: number;
}

export async function dbActivity(databaseUrl: string): Promise<DbActivity | undefined> {
  try {
    const { stdout } = await run('psql', [
      databaseUrl,
      '-Atc',
      'select xact_commit, xact_rollback, tup_fetched, tup_returned, tup_inserted, tup_updated, tup_deleted ' +
        ', (select coalesce(sum(seq_scan + coalesce(idx_scan, 0) + n_tup_ins), 0) from pg_stat_user_tables) ' +
        'from pg_stat_database where datname = current_database()',
    ]);
    const [commits, rollbacks, rowsFetched, rowsReturned, rowsInserted, rowsUpdated, rowsDeleted, statements] = stdout
      .trim()
      .split('|')
      .map(Number);
    return {
      commits: commits!,
      rollbacks: rollbacks!,
      rowsFetched: rowsFetched!,
      rowsReturned: rowsReturned!,
      rowsInserted: rowsInserted!,
      rowsUpdated: rowsUpdated!,
      rowsDeleted: rowsDeleted!,
      statements: statements!,
    };
  } catch {
    return undefined;
  }
}

export function activityBetween(a: DbActivity | undefined, b: DbActivity | undefined): DbActivity | undefined {
  if (!a || !b) return undefined;
  return {
    commits: b.commits - a.commits,
    rollbacks: b.rollbacks - a.rollbacks,
    rowsFetched: b.rowsFetched - a.rowsFetched,
    rowsReturned: b.rowsReturned - a.rowsReturned,
    rowsInserted: b.rowsInserted - a.rowsInserted,
    rowsUpdated: b.rowsUpdated - a.rowsUpdated,
    rowsDeleted: b.rowsDeleted - a.rowsDeleted,
    statements: b.statements - a.statements,
  };
}
