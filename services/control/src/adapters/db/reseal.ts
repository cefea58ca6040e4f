// Control's secret values sealed under the active key: at start (which also seals values an older
// version stored in clear) and after `stageline admin rotate-key`.
import type { Database } from '@stageline/db';
import { resealRecord, resealValue, type Secrets, sweepColumn } from '@stageline/secrets';

/** How many values were sealed again. */
export async function resealControlSecrets(db: Database, secrets: Secrets): Promise<number> {
  const webhooks = await sweepColumn((sql, params) => db.em().execute(sql, params), {
    table: 'webhook_secret',
    key: 'environment_id',
    column: 'secret',
    json: false,
    reseal: (value) => {
      const next = resealValue(secrets, value as string);
      return { value: next.value, changed: next.changed ? 1 : 0 };
    },
  });
  return webhooks + (await resealServiceSecrets(db, secrets));
}

function resealServiceSecrets(db: Database, secrets: Secrets): Promise<number> {
  return sweepColumn((sql, params) => db.em().execute(sql, params), {
    table: 'service',
    key: 'id',
    column: 'secrets',
    json: true,
    where: `secrets <> '{}'::jsonb`,
    reseal: (value) => resealRecord(secrets, value as Record<string, string>),
  });
}
