// The live release of each service (DEPLOYED or STOPPED, the highest such revision): what the runtime
// status watches. Read-only over schema `deploy`'s release table.
import type { Database } from '@stageline/db';
import type { LiveReleases } from '../../app/runtime-status.ts';
import { liveRelease, type Release } from '../../domain/release.ts';
import { ReleaseRow } from './entities.ts';
import { toRelease } from './release-store.ts';

export class PgLiveReleases implements LiveReleases {
  readonly #db: Database;
  constructor(db: Database) {
    this.#db = db;
  }

  async live(environmentId?: string): Promise<Release[]> {
    const rows = await this.#db.retry('reading live releases', (em) =>
      em.find(ReleaseRow, {
        status: { $in: ['DEPLOYED', 'STOPPED'] },
        ...(environmentId !== undefined ? { environmentId } : {}),
      }),
    );
    const byService = new Map<string, Release[]>();
    for (const r of rows.map(toRelease)) byService.set(r.serviceId, [...(byService.get(r.serviceId) ?? []), r]);
    return [...byService.values()].flatMap((list) => {
      const live = liveRelease(list);
      return live === undefined ? [] : [live];
    });
  }

  async latest(serviceId: string): Promise<Release | undefined> {
    const row = await this.#db.retry("reading a service's latest release", (em) =>
      em.findOne(ReleaseRow, { serviceId }, { orderBy: { revision: 'desc' } }),
    );
    return row === null ? undefined : toRelease(row);
  }
}
