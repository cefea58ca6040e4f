import type { Database } from '@stageline/db';
import type { AutoDeployStore } from '../../app/auto-deploy-app.ts';

// Auto-deploy's own rows in schema `control`: each environment's webhook secret (sealed by the caller,
// stored as given) and what the pollers last saw of each service's source.

export class PgAutoDeployStore implements AutoDeployStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  #execute<T = Record<string, unknown>[]>(sql: string, params: unknown[] = []): Promise<T> {
    const what = `auto-deploy store: ${sql.trim().split(/\s+/).slice(0, 3).join(' ')}`;
    return this.#db.retry(what, (em) => em.execute(sql, params) as Promise<T>);
  }

  async setWebhookSecret(environmentId: string, sealed: string, at: Date): Promise<void> {
    await this.#execute(
      `insert into webhook_secret (environment_id, secret, rotated_at) values (?, ?, ?)
       on conflict (environment_id) do update set secret = excluded.secret, rotated_at = excluded.rotated_at`,
      [environmentId, sealed, at],
    );
  }

  async webhookSecret(environmentId: string): Promise<string | undefined> {
    const rows = await this.#execute<{ secret: string }[]>(
      'select secret from webhook_secret where environment_id = ?',
      [environmentId],
    );
    return rows[0]?.secret;
  }

  async seen(serviceId: string): Promise<string | undefined> {
    const rows = await this.#execute<{ seen: string }[]>('select seen from auto_deploy_seen where service_id = ?', [
      serviceId,
    ]);
    return rows[0]?.seen;
  }

  async setSeen(serviceId: string, seen: string, at: Date): Promise<void> {
    await this.#execute(
      `insert into auto_deploy_seen (service_id, seen, seen_at) values (?, ?, ?)
       on conflict (service_id) do update set seen = excluded.seen, seen_at = excluded.seen_at`,
      [serviceId, seen, at],
    );
  }

  async pollingEnvironments(): Promise<{ id: string; intervalSeconds: number }[]> {
    const rows = await this.#execute<{ id: string; interval: number }[]>(
      `select id, (settings->'autoDeploy'->>'pollIntervalSeconds')::integer as interval from environment
        where status <> 10 and coalesce((settings->'autoDeploy'->>'pollIntervalSeconds')::integer, 0) > 0
        order by id`,
    );
    return rows.map((r) => ({ id: r.id, intervalSeconds: Number(r.interval) }));
  }
}
