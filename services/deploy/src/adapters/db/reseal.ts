// The deploy schema's secret values sealed under the active key: at start (which also seals values an
// older version stored in clear) and after `stageline admin rotate-key`.
import type { Database } from '@stageline/db';
import { resealRecord, resealValue, type Secrets, sweepColumn } from '@stageline/secrets';

/** How many values were sealed again: database passwords, and the outputs of recorded job outcomes. */
export async function resealDeploySecrets(db: Database, secrets: Secrets): Promise<number> {
  const run = (sql: string, params: unknown[]) => db.em().execute(sql, params);
  const passwords = await sweepColumn(run, {
    table: 'database_credential',
    key: 'service_id',
    column: 'password',
    json: false,
    reseal: (value) => {
      const r = resealValue(secrets, value as string);
      return { value: r.value, changed: r.changed ? 1 : 0 };
    },
  });
  const outcomes = await sweepColumn(run, {
    table: 'job_result',
    key: 'job_id',
    column: 'result',
    json: true,
    where: `result->'outputs' is not null`,
    reseal: (value) => {
      const result = value as { outputs?: Record<string, string> };
      const outputs = resealRecord(secrets, result.outputs ?? {});
      return { value: { ...result, outputs: outputs.value }, changed: outputs.changed };
    },
  });
  return passwords + outcomes;
}
