// Control's secret values sealed under the active key: at start (which also seals values an older
// version stored in clear) and after `stageline admin rotate-key`.
import type { Database } from '@stageline/db';
import { resealRecord, type Secrets, sweepColumn } from '@stageline/secrets';

/** How many values were sealed again. */
export function resealControlSecrets(db: Database, secrets: Secrets): Promise<number> {
  return sweepColumn((sql, params) => db.em().execute(sql, params), {
    table: 'service',
    key: 'id',
    column: 'secrets',
    json: true,
    where: `secrets <> '{}'::jsonb`,
    reseal: (value) => resealRecord(secrets, value as Record<string, string>),
  });
}
