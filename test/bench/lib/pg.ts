// PostgreSQL activity of the stack's own database (pg_stat_database), through psql: transactions and
// rows touched per run. Backends publish their counters at most once a second, so a sample taken right
// after a run may miss the last second's work: those figures are approximate (and say so). Statements
// are exact: each service counts what it sends (stageline_db_statements_total on its /metrics).
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
   * SQL statements the stack's services sent (the sum of their stageline_db_statements_total; begin and
   * commit not included) — NaN when the services could not be asked. pg_stat_statements, which would
   * count them on the server, is not loaded on the shared server.
   */
  statements: number;
}

/** The sum of every service's stageline_db_statements_total now (NaN when one does not answer). */
async function statementsSent(metricsUrls: readonly string[]): Promise<number> {
  let total = 0;
  for (const url of metricsUrls) {
    try {
      const text = await (await fetch(url)).text();
      for (const line of text.split('\n')) {
        if (line.startsWith('stageline_db_statements_total')) total += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
    } catch {
      return Number.NaN;
    }
  }
  return total;
}

export async function dbActivity(stack: {
  databaseUrl: string;
  metricsUrls: readonly string[];
}): Promise<DbActivity | undefined> {
  const { databaseUrl } = stack;
  try {
    const { stdout } = await run('psql', [
      databaseUrl,
      '-Atc',
      'select xact_commit, xact_rollback, tup_fetched, tup_returned, tup_inserted, tup_updated, tup_deleted ' +
        'from pg_stat_database where datname = current_database()',
    ]);
    const statements = await statementsSent(stack.metricsUrls);
    const [commits, rollbacks, rowsFetched, rowsReturned, rowsInserted, rowsUpdated, rowsDeleted] = stdout
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
      statements,
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
