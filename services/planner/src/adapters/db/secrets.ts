// Secret values in the planner's schema (issue 20). The planner never opens them: run snapshots keep the
// services' secret env values sealed as control handed them (so a run keeps what it deployed), and run
// states and service statuses keep the outputs workers handed on (sealed by them). Here they are sealed
// again under the active key (at start and after a rotation) and purged when their service or their
// environment goes.
import type { Database, EntityManager } from '@stageline/db';
import { resealRecord, resealValue, type Secrets, sweepColumn } from '@stageline/secrets';
import type { RunState } from '../../domain/model.ts';

interface SnapshotJson {
  environment?: unknown;
  services?: Array<{ id?: string; envVars?: Array<{ key?: string; value?: string; secret?: boolean }> }>;
}

/** `only`: one service's values; absent, every service's. */
export function purgeSnapshot(snapshot: SnapshotJson, only?: string): SnapshotJson {
  return {
    ...snapshot,
    services: (snapshot.services ?? []).map((s) =>
      only !== undefined && s.id !== only
        ? s
        : { ...s, envVars: (s.envVars ?? []).map((v) => (v.secret ? { ...v, value: '' } : v)) },
    ),
  };
}

/**
 * A queued run's kept snapshot without a service removed from the environment while the run waited: the
 * run deploys the environment as its request saw it, less what is gone since (nothing would own what
 * it deployed).
 */
export function withoutService(snapshot: SnapshotJson, serviceId: string): SnapshotJson {
  return { ...snapshot, services: (snapshot.services ?? []).filter((s) => s.id !== serviceId) };
}

export function purgeState(state: RunState, only?: string): RunState {
  return {
    ...state,
    services: state.services.map((s) => (only !== undefined && s.serviceId !== only ? s : { ...s, outputs: {} })),
  };
}

/**
 * Removes the secret values of one service (removed from its environment) or of a whole environment
 * (deleted) from every run and status the planner keeps: a hard delete of the values, the runs stay —
 * and a removed service leaves the snapshots of queued runs altogether. Under the environment's lane
 * lock, so a run in progress is not written over.
 */
export async function purgeSecrets(db: Database, environmentId: string, serviceId?: string): Promise<number> {
  return db.em().transactional(async (em: EntityManager) => {
    await em.execute('insert into lane (environment_id) values (?) on conflict do nothing', [environmentId]);
    await em.execute('select 1 from lane where environment_id = ? for update', [environmentId]);
    const rows = await em.execute<
      Array<{ id: string; status: string; snapshot: SnapshotJson | null; state: RunState | null }>
    >(
      'select id, status, snapshot, state from deployment where environment_id = ? and (snapshot is not null or state is not null)',
      [environmentId],
    );
    const purged = new Set<string>();
    for (const row of rows) {
      const kept =
        row.snapshot !== null && row.status === 'QUEUED' && serviceId !== undefined
          ? withoutService(row.snapshot, serviceId)
          : row.snapshot;
      const snapshot = kept === null ? null : purgeSnapshot(kept, serviceId);
      const state = row.state === null ? null : purgeState(row.state, serviceId);
      if (
        JSON.stringify(snapshot) === JSON.stringify(row.snapshot) &&
        JSON.stringify(state) === JSON.stringify(row.state)
      )
        continue;
      await em.execute('update deployment set snapshot = ?::jsonb, state = ?::jsonb where id = ?', [
        snapshot === null ? null : JSON.stringify(snapshot),
        state === null ? null : JSON.stringify(state),
        row.id,
      ]);
      purged.add(row.id);
    }
    // Service runs kept as rows: their outputs.
    const runs = await em.execute<Array<{ deployment_id: string }>>(
      `update service_run set run = jsonb_set(run, '{outputs}', '{}'::jsonb)
        where deployment_id in (select id from deployment where environment_id = ?)${serviceId !== undefined ? ' and service_id = ?' : ''}
          and run->'outputs' <> '{}'::jsonb
        returning deployment_id`,
      [environmentId, ...(serviceId !== undefined ? [serviceId] : [])],
    );
    for (const r of runs) purged.add(r.deployment_id);
    if (serviceId !== undefined) {
      await em.execute('delete from service_status where service_id = ?', [serviceId]);
    } else {
      await em.execute(`update service_status set outputs = '{}'::jsonb where environment_id = ?`, [environmentId]);
    }
    return purged.size;
  });
}

/** How many values were sealed again under the active key (snapshots, run outputs, service outputs). */
export async function resealPlannerSecrets(db: Database, secrets: Secrets): Promise<number> {
  const run = (sql: string, params: unknown[]) => db.em().execute(sql, params);
  const snapshots = await sweepColumn(run, {
    table: 'deployment',
    key: 'id',
    column: 'snapshot',
    json: true,
    where: 'snapshot is not null',
    reseal: (value) => {
      let changed = 0;
      const snapshot = value as SnapshotJson;
      const services = (snapshot.services ?? []).map((s) => ({
        ...s,
        envVars: (s.envVars ?? []).map((v) => {
          if (!v.secret || !v.value) return v;
          const r = resealValue(secrets, v.value);
          if (r.changed) changed++;
          return { ...v, value: r.value };
        }),
      }));
      return { value: { ...snapshot, services }, changed };
    },
  });
  const states = await sweepColumn(run, {
    table: 'deployment',
    key: 'id',
    column: 'state',
    json: true,
    where: 'state is not null',
    reseal: (value) => {
      let changed = 0;
      const state = value as RunState;
      const services = state.services.map((s) => {
        const r = resealRecord(secrets, s.outputs ?? {});
        changed += r.changed;
        return r.changed === 0 ? s : { ...s, outputs: r.value };
      });
      return { value: { ...state, services }, changed };
    },
  });
  // Service runs kept as rows (planner-0005): each one's outputs.
  const serviceRuns = await sweepColumn(run, {
    table: 'service_run',
    key: `(deployment_id::text || ':' || position)`,
    column: 'run',
    json: true,
    where: `run->'outputs' <> '{}'::jsonb`,
    reseal: (value) => {
      const s = value as RunState['services'][number];
      const r = resealRecord(secrets, s.outputs ?? {});
      return { value: r.changed === 0 ? s : { ...s, outputs: r.value }, changed: r.changed };
    },
  });
  const statuses = await sweepColumn(run, {
    table: 'service_status',
    key: 'service_id',
    column: 'outputs',
    json: true,
    where: `outputs <> '{}'::jsonb`,
    reseal: (value) => resealRecord(secrets, value as Record<string, string>),
  });
  return snapshots + states + serviceRuns + statuses;
}
