import type { EntityManager } from '@stageline/db';
import type { RunOptions, RunState } from '../../domain/model.ts';

// The hot path's statements, hand-written: a job report costs a lane lock, one read of the run and one
// write of its progress. Through the ORM the same work re-serialized the run's snapshot on every flush
// (to look for changes it never had) and took two statements to lock the lane.

/** A run as the planner works on it: its row, with the snapshot parsed only when something asks for it. */
export interface RunRecord {
  id: string;
  environmentId: string;
  action: string;
  status: string;
  requester: string;
  serviceIds: string[];
  version: string;
  forceBuild: boolean;
  toDeploymentId?: string | null | undefined;
  options: RunOptions;
  state: RunState | null | undefined;
  /** The environment snapshot the run works from (services as proto JSON, secrets included). */
  snapshot: unknown;
  message: string;
  /** The sequence of the run's latest event (DeploymentEvent.sequence). */
  eventSequence: number;
  createdAt: Date;
  startedAt?: Date | null | undefined;
  finishedAt?: Date | null | undefined;
}

/**
 * Takes the environment's lane lock (one writer per environment) in one statement, creating the lane
 * on first use: an upsert that locks the row it finds. Returns whether the environment is deleted.
 */
export async function lockLane(em: EntityManager, environmentId: string): Promise<boolean> {
  const rows = await em.execute<{ deleted: boolean }[]>(
    'insert into lane (environment_id) values (?) on conflict (environment_id) do update set deleted = lane.deleted returning deleted',
    [environmentId],
  );
  return rows[0]?.deleted ?? false;
}

/** The environment a run belongs to (it never changes), or undefined for an unknown run. */
export async function environmentOfRun(em: EntityManager, deploymentId: string): Promise<string | undefined> {
  const rows = await em.execute<{ environment_id: string }[]>('select environment_id from deployment where id = ?', [
    deploymentId,
  ]);
  return rows[0]?.environment_id;
}

interface RunColumns {
  id: string;
  environment_id: string;
  action: string;
  status: string;
  requester: string;
  service_ids: string[] | string;
  version: string;
  force_build: boolean;
  to_deployment_id: string | null;
  options: RunOptions | string | null;
  state: string | null;
  snapshot: string | null;
  message: string;
  event_sequence: number;
  created_at: Date | string;
  started_at: Date | string | null;
  finished_at: Date | string | null;
}

const date = (v: Date | string | null): Date | null => (v === null ? null : v instanceof Date ? v : new Date(v));

/** A run's row; the JSON columns come as text and are parsed here (the snapshot on first use). */
export async function readRun(em: EntityManager, deploymentId: string): Promise<RunRecord | undefined> {
  const rows = await em.execute<RunColumns[]>(
    `select id, environment_id, action, status, requester, service_ids, version, force_build, to_deployment_id, options,
       state::text as state, snapshot::text as snapshot, message, event_sequence, created_at, started_at, finished_at
     from deployment where id = ?`,
    [deploymentId],
  );
  const r = rows[0];
  if (r === undefined) return undefined;
  const snapshotText = r.snapshot;
  let snapshot: unknown;
  let parsed = false;
  return {
    id: r.id,
    environmentId: r.environment_id,
    action: r.action,
    status: r.status,
    requester: r.requester,
    serviceIds: typeof r.service_ids === 'string' ? (JSON.parse(r.service_ids) as string[]) : r.service_ids,
    version: r.version,
    forceBuild: r.force_build,
    toDeploymentId: r.to_deployment_id,
    options: (typeof r.options === 'string' ? JSON.parse(r.options) : (r.options ?? {})) as RunOptions,
    state: r.state === null ? null : (JSON.parse(r.state) as RunState),
    get snapshot() {
      if (!parsed) {
        snapshot = snapshotText === null ? null : JSON.parse(snapshotText);
        parsed = true;
      }
      return snapshot;
    },
    set snapshot(value: unknown) {
      snapshot = value;
      parsed = true;
    },
    message: r.message,
    eventSequence: r.event_sequence,
    createdAt: date(r.created_at)!,
    startedAt: date(r.started_at),
    finishedAt: date(r.finished_at),
  };
}

/**
 * Writes what a job report can change: the run's state, status, message, event sequence and times
 * (never its snapshot).
 */
export async function writeProgress(em: EntityManager, run: RunRecord): Promise<void> {
  await em.execute(
    `update deployment set state = ?::jsonb, status = ?, message = ?, event_sequence = ?,
       started_at = ?::timestamptz, finished_at = ?::timestamptz where id = ?`,
    [
      run.state == null ? null : JSON.stringify(run.state),
      run.status,
      run.message,
      run.eventSequence,
      run.startedAt?.toISOString() ?? null,
      run.finishedAt?.toISOString() ?? null,
      run.id,
    ],
  );
}

/** What each service of the environment produced when it last deployed (injected into later stages). */
export async function serviceOutputs(
  em: EntityManager,
  environmentId: string,
): Promise<Map<string, Record<string, string>>> {
  const rows = await em.execute<{ service_id: string; outputs: Record<string, string> | string }[]>(
    'select service_id, outputs from service_status where environment_id = ?',
    [environmentId],
  );
  return new Map(
    rows.map((r) => [
      r.service_id,
      typeof r.outputs === 'string' ? (JSON.parse(r.outputs) as Record<string, string>) : r.outputs,
    ]),
  );
}

/** Whether each service of the environment has resources, as the planner last recorded it. */
export async function serviceResources(em: EntityManager, environmentId: string): Promise<Map<string, boolean>> {
  const rows = await em.execute<{ service_id: string; has_resources: boolean }[]>(
    'select service_id, has_resources from service_status where environment_id = ?',
    [environmentId],
  );
  return new Map(rows.map((r) => [r.service_id, r.has_resources]));
}

/** Runs waiting behind each environment's active one (environments with none are left out). */
export async function queuedByEnvironment(
  em: EntityManager,
): Promise<Array<{ environmentId: string; queued: number }>> {
  const rows = await em.execute<{ environment_id: string; queued: number }[]>(
    `select environment_id, count(*)::int as queued from deployment where status = 'QUEUED' group by environment_id`,
  );
  return rows.map((r) => ({ environmentId: r.environment_id, queued: r.queued }));
}
