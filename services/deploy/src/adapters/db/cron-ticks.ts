// Cron ticks on PostgreSQL: the unique (service, tick) row is the claim that makes a tick run exactly once
// whatever number of deploy processes poll the schedules, and the record of its run (status, log).
import { type Database, newId } from '@stageline/db';
import type { CronRun, CronTickStore, TickClaim } from '../../app/cron-scheduler.ts';
import { CronTickRow } from './entities.ts';
import { unavailable } from './release-store.ts';

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
    const rows = await this.#db
      .em()
      .execute<Array<{ id: string }>>(
        `insert into cron_tick (id, service_id, environment_id, tick, release_id, revision, status, owner,
           started_at, heartbeat_at)
         values (?, ?, ?, ?, ?, ?, 'RUNNING', ?, ?, ?)
         on conflict (service_id, tick) do nothing
         returning id`,
        [id, claim.serviceId, claim.environmentId, claim.tick, claim.releaseId, claim.revision, claim.owner, now, now],
      )
      .catch(unavailable);
    return rows[0]?.id;
  }

  async heartbeat(id: string, now: Date): Promise<void> {
    await this.#db.em().nativeUpdate(CronTickRow, { id, status: 'RUNNING' }, { heartbeatAt: now }).catch(unavailable);
  }

  async finish(
    id: string,
    outcome: { status: 'SUCCEEDED' | 'FAILED'; exitCode: number; message: string; log: string[] },
    now: Date,
  ): Promise<void> {
    await this.#db
      .em()
      .nativeUpdate(CronTickRow, { id }, { ...outcome, finishedAt: now, heartbeatAt: now })
      .catch(unavailable);
  }

  async failStale(staleBefore: Date, now: Date): Promise<number> {
    return this.#db
      .em()
      .nativeUpdate(
        CronTickRow,
        { status: 'RUNNING', heartbeatAt: { $lt: staleBefore } },
        {
          status: 'FAILED',
          exitCode: -1,
          message: 'interrupted: the deploy process running it stopped',
          finishedAt: now,
        },
      )
      .catch(unavailable);
  }

  async list(serviceId: string, limit: number): Promise<CronRun[]> {
    const rows = await this.#db
      .em()
      .find(CronTickRow, { serviceId }, { orderBy: { tick: 'desc' }, limit })
      .catch(unavailable);
    return rows.map(toRun);
  }
}
