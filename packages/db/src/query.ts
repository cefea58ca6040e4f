import type { EntityManager } from '@mikro-orm/postgresql';
import { metrics } from '@stageline/telemetry';
import { CompiledQuery } from 'kysely';

// Hand-written SQL on the hot paths, with bind parameters. `em.execute(sql, params)` formats the
// parameters into the SQL text on the client (MikroORM escapes every string character by character,
// a run's JSON state included) and sends one simple query; here the text goes as written and the
// values travel separately in PostgreSQL's extended protocol (pg's `query(text, values)`), in the
// EntityManager's transaction when it has one.

/** `?` placeholders → `$1…$n`, outside quoted literals and identifiers; remembered per text. */
const positional = new Map<string, string>();

/**
 * The SQL with each `?` outside quotes numbered as `$n` (a text written with `$n` already passes
 * unchanged). PostgreSQL's jsonb `?`, `?|` and `?&` operators cannot be written here: use `$n`.
 */
export function numberPlaceholders(text: string): string {
  const known = positional.get(text);
  if (known !== undefined) return known;
  let out = '';
  let n = 0;
  let quote: string | null = null;
  for (const ch of text) {
    if (quote !== null) {
      if (ch === quote) quote = null;
      out += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      out += ch;
    } else if (ch === '?') {
      n += 1;
      out += `$${n}`;
    } else {
      out += ch;
    }
  }
  // Texts are the code's own constants: a bound keeps a caller that builds texts from growing the map.
  if (positional.size < 1_000) positional.set(text, out);
  return out;
}

interface Executor {
  executeQuery<R>(query: CompiledQuery<R>): Promise<{ rows: R[]; numAffectedRows?: bigint }>;
}

/**
 * Runs one statement with bind parameters on `em`'s connection (inside its transaction when it has
 * one) and returns the rows. Values go as pg sends them: strings as is, objects and arrays as JSON,
 * Dates as timestamps, null as NULL — cast in the SQL where the column needs it (`?::jsonb`). Rows come
 * back as with `em.execute`: json/jsonb parsed, timestamps as PostgreSQL's text (MikroORM's parsers).
 */
export async function query<R = Record<string, unknown>>(
  em: EntityManager,
  text: string,
  params: readonly unknown[] = [],
): Promise<R[]> {
  metrics.dbStatements.inc({ schema: em.config.get('schema') ?? '' });
  const transaction = em.getTransactionContext<Executor>();
  const executor: Executor = transaction ?? (em.getConnection().getClient() as unknown as Executor);
  const result = await executor.executeQuery<R>(CompiledQuery.raw(numberPlaceholders(text), [...params]));
  return result.rows;
}
