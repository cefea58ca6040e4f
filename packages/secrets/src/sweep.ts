// Sealing stored values again under the active key: after a rotation, and at every start (which also
// seals values stored in clear by an older version). Each service sweeps its own schema with these.
import { isSealed, keyIdOf, SecretError } from './envelope.ts';
import type { Secrets } from './keyring.ts';

/**
 * A value in clear sealed; an envelope under an older key sealed again; one under the active key kept.
 * One this process cannot open (a key it does not have, a damaged value) is kept as it is: a sweep
 * must never stop a service from starting — the value fails, naming its key, only where it is used.
 */
export function resealValue(secrets: Secrets, value: string): { value: string; changed: boolean } {
  if (value === '') return { value, changed: false };
  if (!isSealed(value)) return { value: secrets.seal(value), changed: true };
  if (keyIdOf(value) === secrets.activeKeyId()) return { value, changed: false };
  let opened: string;
  try {
    opened = secrets.open(value);
  } catch (e) {
    if (e instanceof SecretError) return { value, changed: false };
    throw e;
  }
  return { value: secrets.seal(opened), changed: true };
}

/** `resealValue` over every value of a map (secret env values by key, job outputs). */
export function resealRecord(
  secrets: Secrets,
  values: Readonly<Record<string, string>>,
): { value: Record<string, string>; changed: number } {
  let changed = 0;
  const value = Object.fromEntries(
    Object.entries(values).map(([k, v]) => {
      const r = resealValue(secrets, v);
      if (r.changed) changed++;
      return [k, r.value];
    }),
  );
  return { value, changed };
}

/** Runs one SQL statement with `?` placeholders and returns its rows (a service's `em.execute`). */
export type SqlRun = (sql: string, params: unknown[]) => Promise<Array<Record<string, unknown>>>;

export interface ColumnSweep {
  table: string;
  /** The primary key column. */
  key: string;
  column: string;
  /** jsonb (compared and written as JSON) or text. */
  json: boolean;
  /** Which rows can hold a secret (SQL), e.g. `secrets <> '{}'`; default every row. */
  where?: string;
  /** The column's value sealed again, and how many values changed (0: the row is left alone). */
  reseal(value: unknown): { value: unknown; changed: number };
}

/**
 * Seals a column's values again row by row. Each write is conditional on the row still holding what was
 * read, so a sweep never overwrites a change made meanwhile (that change was sealed under the active key).
 * Returns how many values were sealed again.
 */
export async function sweepColumn(run: SqlRun, sweep: ColumnSweep): Promise<number> {
  const { table, key, column, json } = sweep;
  const rows = await run(
    `select ${key} as k, ${column} as v from ${table}${sweep.where ? ` where ${sweep.where}` : ''}`,
    [],
  );
  let changed = 0;
  for (const row of rows) {
    const next = sweep.reseal(row.v);
    if (next.changed === 0) continue;
    const cast = json ? '::jsonb' : '';
    const encode = (v: unknown) => (json ? JSON.stringify(v) : v);
    const updated = await run(
      `update ${table} set ${column} = ?${cast} where ${key} = ? and ${column} = ?${cast} returning ${key}`,
      [encode(next.value), row.k, encode(row.v)],
    );
    if (updated.length > 0) changed += next.changed;
  }
  return changed;
}
