// Cron ticks on PostgreSQL: the unique (service, tick) row is the claim that makes a tick run exactly once
// whatever number of deploy processes poll the schedules, and the record of its run (status, log).
import { type Database, newId } from '@stageline/db';
import type { CronRun, CronTickStore, TickClaim } from '../../app/cron-scheduler.ts';
import { CronTickRow } from './entities.ts';

function toRun(row: CronTickRow): CronRun {
  return {
    id: row.id,
    serviceId: row.serviceId,
    environmentId: row.environmentId,
    tick: row.tick,
    releaseId: row.releaseId,
    revision: row.revision,
    status: row.status as CronRun['status'],
    exitCode: row.exitCode,
    message: row.message,
    log: row.log,
    owner: row.owner,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt ?? undefined,
  };
}

export class PgCronTicks implements CronTickStore {
  readonly #db: Database;
  constructor(deps: { db: Database }) {
    this.#db = deps.db;
  }

  async claim(claim: TickClaim, now: Date): Promise<string | undefined> {
    const id = newId();
    // Safe to run again: a retry after a lost commit finds its own row by id.
    return this.#db.retry('claiming a cron tick', async (em) => {
      const rows = await em.execute<Array<{ id: string }>>(
        `insert into cron_tick (id, service_id, environment_id, tick, release_id, revision, status, owner,
           started_at, heartbeat_at)
         values (?, ?, ?, ?, ?, ?, 'RUNNING', ?, ?, ?)
         on conflict (service_id, tick) do nothing
         returning id`,
        [id, claim.serviceId, claim.environmentId, claim.tick, claim.releaseId, claim.revision, claim.owner, now, now],
      );
      if (rows[0] !== undefined) return rows[0].id;
      const mine = await em.execute<Array<{ id: string }>>('select id from cron_tick where id = ?', [id]);
      return mine[0]?.id;
    });
  }

  async heartbeat(id: string, now: Date): Promise<void> {
    await this.#db.retry('recording a cron heartbeat', (em) =>
      em.nativeUpdate(CronTickRow, { id, status: 'RUNNING' }, { heartbeatAt: now }),
    );
  }

  async finish(
    id: string,
    outcome: { status: 'SUCCEEDED' | 'FAILED'; exitCode: number; message: string; log: string[] },
    now: Date,
  ): Promise<void> {
    await this.#db.retry("recording a cron run's outcome", (em) =>
      em.nativeUpdate(CronTickRow, { id }, { ...outcome, finishedAt: now, heartbeatAt: now }),
    );
  }

  async failStale(staleBefore: Date, now: Date): Promise<number> {
    return this.#db.retry('failing stale cron runs', (em) =>
      em.nativeUpdate(
        CronTickRow,
        { status: 'RUNNING', heartbeatAt: { $lt: staleBefore } },
        {
          status: 'FAILED',
          exitCode: -1,
          message: 'interrupted: the deploy process running it stopped',
          finishedAt: now,
        },
      ),
    );
  }

  async list(serviceId: string, limit: number): Promise<CronRun[]> {
    const rows = await this.#db.retry("reading a cron job's runs", (em) =>
      em.find(CronTickRow, { serviceId }, { orderBy: { tick: 'desc' }, limit }),
    );
    return rows.map(toRun);
  }
}
