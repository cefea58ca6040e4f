import { type EntityManager, OUTBOX_INSERT, query } from '@stageline/db';
import type { RunHead, RunRecord, ServiceStatus } from '../../app/run-store.ts';
import type { RunOptions, RunState } from '../../domain/model.ts';

// The run store's statements, hand-written: a job report costs a lane lock, one read of the run and one
// write of its progress. Through the ORM the same work re-serialized the run's snapshot on every flush
// (to look for changes it never had) and took two statements to lock the lane.

const OPEN = `('QUEUED', 'RUNNING', 'CANCELING')`;
/**
 * A run's state assembled: its header (`deployment.state`) with its service runs (`service_run`, in
 * order) — or, for a row that has none, the services its header still holds (written before).
 */
export const STATE = `case when d.state is null then null else jsonb_set(d.state, '{services}', coalesce(
  (select jsonb_agg(r.run order by r.position) from service_run r where r.deployment_id = d.id),
  d.state->'services', '[]'::jsonb)) end::text`;
const HEAD = `d.id, d.environment_id, d.action, d.status, d.requester, d.service_ids, d.version, d.force_build,
  d.to_deployment_id, d.options, ${STATE} as state, d.message, d.event_sequence, d.created_at, d.started_at, d.finished_at`;

/**
 * Takes the environment's lane lock (one writer per environment) in one statement, creating the lane
 * on first use: an upsert that locks the row it finds. Returns whether the environment is deleted.
 */
export async function lockLane(em: EntityManager, environmentId: string): Promise<boolean> {
  const rows = await query<{ deleted: boolean }>(
    em,
    'insert into lane (environment_id) values (?) on conflict (environment_id) do update set deleted = lane.deleted returning deleted',
    [environmentId],
  );
  return rows[0]?.deleted ?? false;
}

/**
 * Takes several environments' lane locks in one statement, in environment id order (so two batches
 * never wait on each other in a cycle), creating lanes on first use. Returns whether each is deleted.
 */
export async function lockLanes(em: EntityManager, environmentIds: readonly string[]): Promise<Map<string, boolean>> {
  const rows = await query<{ environment_id: string; deleted: boolean }>(
    em,
    `insert into lane (environment_id) select x from unnest(?::uuid[]) as x order by x
     on conflict (environment_id) do update set deleted = lane.deleted returning environment_id, deleted`,
    [[...environmentIds].sort()],
  );
  return new Map(rows.map((r) => [r.environment_id, r.deleted]));
}

interface HeadColumns {
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
  message: string;
  event_sequence: number;
  created_at: Date | string;
  started_at: Date | string | null;
  finished_at: Date | string | null;
}

const date = (v: Date | string | null): Date | null => (v === null ? null : v instanceof Date ? v : new Date(v));
const json = <T>(v: T | string): T => (typeof v === 'string' ? (JSON.parse(v) as T) : v);

function headOf(r: HeadColumns): RunHead {
  return {
    id: r.id,
    environmentId: r.environment_id,
    action: r.action,
    status: r.status,
    requester: r.requester,
    serviceIds: json(r.service_ids),
    version: r.version,
    forceBuild: r.force_build,
    toDeploymentId: r.to_deployment_id,
    options: r.options === null ? {} : json(r.options),
    state: r.state === null ? null : (JSON.parse(r.state) as RunState),
    message: r.message,
    eventSequence: r.event_sequence,
    createdAt: date(r.created_at)!,
    startedAt: date(r.started_at),
    finishedAt: date(r.finished_at),
  };
}

/** A run with its snapshot, parsed on first use (a job report that dispatches nothing never needs it). */
function recordOf(r: HeadColumns & { snapshot: string | null }): RunRecord {
  const snapshotText = r.snapshot;
  let snapshot: unknown;
  let parsed = false;
  return {
    ...headOf(r),
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
  };
}

export async function readRun(em: EntityManager, id: string): Promise<RunRecord | undefined> {
  const rows = await query<HeadColumns & { snapshot: string | null }>(
    em,
    `select ${HEAD}, d.snapshot::text as snapshot from deployment d where d.id = ?`,
    [id],
  );
  return rows[0] === undefined ? undefined : recordOf(rows[0]);
}

/** Several runs in one statement, by id (missing ones are left out). */
export async function readRuns(em: EntityManager, ids: readonly string[]): Promise<Map<string, RunRecord>> {
  if (ids.length === 0) return new Map();
  const rows = await query<HeadColumns & { snapshot: string | null }>(
    em,
    `select ${HEAD}, d.snapshot::text as snapshot from deployment d where d.id = any(?::uuid[])`,
    [[...ids]],
  );
  return new Map(rows.map((r) => [r.id, recordOf(r)]));
}

export async function activeRuns(em: EntityManager): Promise<RunRecord[]> {
  const rows = await query<HeadColumns & { snapshot: string | null }>(
    em,
    `select ${HEAD}, d.snapshot::text as snapshot from deployment d where d.status in ('RUNNING', 'CANCELING')`,
  );
  return rows.map(recordOf);
}

export async function openRuns(em: EntityManager, environmentId: string): Promise<RunHead[]> {
  const rows = await query<HeadColumns>(
    em,
    `select ${HEAD} from deployment d where d.environment_id = ? and d.status in ${OPEN} order by d.created_at, d.id`,
    [environmentId],
  );
  return rows.map(headOf);
}

export async function runsPage(
  em: EntityManager,
  environmentId: string,
  page: { before?: string | undefined; limit: number },
): Promise<RunHead[]> {
  // Ids are time-ordered (UUIDv7): newest first by id.
  const rows = await query<HeadColumns>(
    em,
    `select ${HEAD} from deployment d where d.environment_id = ?${page.before ? ' and d.id < ?' : ''} order by d.id desc limit ?`,
    [environmentId, ...(page.before ? [page.before] : []), page.limit],
  );
  return rows.map(headOf);
}

export async function environmentOfRun(em: EntityManager, id: string): Promise<string | undefined> {
  const rows = await query<{ environment_id: string }>(em, 'select environment_id from deployment where id = ?', [id]);
  return rows[0]?.environment_id;
}

export async function runOfRequest(em: EntityManager, requestId: string): Promise<string | undefined> {
  const rows = await query<{ deployment_id: string }>(
    em,
    'select deployment_id from request_key where request_id = ?',
    [requestId],
  );
  return rows[0]?.deployment_id;
}

export async function runState(em: EntityManager, id: string): Promise<RunState | null> {
  const rows = await query<{ state: string | null }>(em, `select ${STATE} as state from deployment d where d.id = ?`, [
    id,
  ]);
  const text = rows[0]?.state ?? null;
  return text === null ? null : (JSON.parse(text) as RunState);
}

export async function recentStates(em: EntityManager, environmentId: string, limit: number): Promise<RunState[]> {
  const rows = await query<{ state: string }>(
    em,
    `select ${STATE} as state from deployment d where d.environment_id = ? and d.finished_at is not null
      and d.state is not null order by d.finished_at desc limit ?`,
    [environmentId, limit],
  );
  return rows.map((r) => JSON.parse(r.state) as RunState);
}

export async function resumedBy(em: EntityManager, environmentId: string, runId: string): Promise<string | undefined> {
  const rows = await query<{ id: string }>(
    em,
    `select id from deployment where environment_id = ? and options->>'resumeOf' = ? order by id limit 1`,
    [environmentId, runId],
  );
  return rows[0]?.id;
}

export async function serviceStatuses(em: EntityManager, environmentId: string): Promise<ServiceStatus[]> {
  return serviceStatusesOf(em, [environmentId]);
}

/** The statuses of several environments' services, in one statement. */
export async function serviceStatusesOf(
  em: EntityManager,
  environmentIds: readonly string[],
): Promise<ServiceStatus[]> {
  const rows = await query<{
    service_id: string;
    environment_id: string;
    has_resources: boolean;
    stopped: boolean;
    version: string;
    image: string;
    state: string;
    outputs: Record<string, string> | string;
  }>(
    em,
    `select service_id, environment_id, has_resources, stopped, version, image, state, outputs
       from service_status where environment_id = any(?::uuid[])`,
    [[...environmentIds]],
  );
  return rows.map((r) => ({
    serviceId: r.service_id,
    environmentId: r.environment_id,
    hasResources: r.has_resources,
    stopped: r.stopped,
    version: r.version,
    image: r.image,
    state: r.state,
    outputs: json(r.outputs),
  }));
}

export async function laneDeleted(em: EntityManager, environmentId: string): Promise<boolean> {
  const rows = await query<{ deleted: boolean }>(em, 'select deleted from lane where environment_id = ?', [
    environmentId,
  ]);
  return rows[0]?.deleted ?? false;
}

const iso = (d: Date | null | undefined) => d?.toISOString() ?? null;

/** The whole run, inserted or written over. */
export async function saveRun(em: EntityManager, run: RunRecord): Promise<void> {
  await query(
    em,
    `insert into deployment (id, environment_id, action, status, requester, service_ids, version, force_build,
       to_deployment_id, options, state, snapshot, message, event_sequence, created_at, started_at, finished_at)
     values (?, ?, ?, ?, ?, ?::jsonb, ?, ?, ?, ?::jsonb, ?::jsonb, ?::jsonb, ?, ?, ?::timestamptz, ?::timestamptz, ?::timestamptz)
     on conflict (id) do update set status = excluded.status, service_ids = excluded.service_ids,
       force_build = excluded.force_build, options = excluded.options, state = excluded.state,
       snapshot = excluded.snapshot, message = excluded.message, event_sequence = excluded.event_sequence,
       started_at = excluded.started_at, finished_at = excluded.finished_at`,
    [
      run.id,
      run.environmentId,
      run.action,
      run.status,
      run.requester,
      JSON.stringify(run.serviceIds),
      run.version,
      run.forceBuild,
      run.toDeploymentId ?? null,
      JSON.stringify(run.options ?? {}),
      headerOf(run.state),
      run.snapshot == null ? null : JSON.stringify(run.snapshot),
      run.message,
      run.eventSequence,
      iso(run.createdAt),
      iso(run.startedAt),
      iso(run.finishedAt),
    ],
  );
  const serviceRuns = serviceRunsJson([progressRow(run, 'all')]);
  if (serviceRuns !== undefined) await query(em, UPSERT_SERVICE_RUNS, [serviceRuns]);
}

/** The run's state without its service runs (they are rows of their own). */
const headerOf = (state: RunState | null | undefined): string | null =>
  state == null ? null : JSON.stringify({ ...state, services: [] });

/** Inserts or replaces service runs; its one parameter: rows of (deployment_id, position, service_id, run). */
const UPSERT_SERVICE_RUNS = `insert into service_run (deployment_id, position, service_id, run)
    select x.deployment_id, x.position, x.service_id, x.run
    from jsonb_to_recordset(?::jsonb) as x(deployment_id uuid, position integer, service_id uuid, run jsonb)
  on conflict (deployment_id, position) do update set service_id = excluded.service_id, run = excluded.run`;

/** The service runs of these progress rows as `UPSERT_SERVICE_RUNS`'s parameter; undefined when none. */
function serviceRunsJson(rows: readonly ProgressRow[]): string | undefined {
  const flat = rows.flatMap((r) =>
    [...r.services].map(([position, s]) => ({ deployment_id: r.header.id, position, ...s })),
  );
  return flat.length === 0 ? undefined : JSON.stringify(flat);
}

/** What one run's progress write carries, made when it is asked for (later changes to the run do not leak in). */
export interface ProgressRow {
  header: Record<string, unknown>;
  /** Its changed service runs, by position. */
  services: Map<number, { service_id: string; run: unknown }>;
}

/** A run's progress as a row of `writeProgressMany`: its header and the service runs that changed. */
export function progressRow(run: RunHead, changed: ReadonlySet<string> | 'all'): ProgressRow {
  const services = new Map<number, { service_id: string; run: unknown }>();
  (run.state?.services ?? []).forEach((s, position) => {
    if (changed === 'all' || changed.has(s.serviceId)) services.set(position, { service_id: s.serviceId, run: s });
  });
  return {
    header: {
      id: run.id,
      state: run.state == null ? null : { ...run.state, services: [] },
      status: run.status,
      message: run.message,
      event_sequence: run.eventSequence,
      started_at: iso(run.startedAt),
      finished_at: iso(run.finishedAt),
    },
    services,
  };
}

/**
 * Several runs' progress and the transaction's outbox rows (`OUTBOX_INSERT`'s parameter) in one
 * statement: data-modifying CTEs for the headers, the changed service runs and the outbox.
 */
export async function writeProgressMany(
  em: EntityManager,
  rows: readonly ProgressRow[],
  outbox: { json: string } | undefined,
): Promise<void> {
  if (rows.length === 0 && outbox === undefined) return;
  const serviceRuns = serviceRunsJson(rows);
  const parts: string[] = [];
  const params: unknown[] = [];
  if (rows.length > 0) {
    parts.push(`h as (update deployment d set state = nullif(x.state, 'null'::jsonb), status = x.status,
        message = x.message, event_sequence = x.event_sequence, started_at = x.started_at, finished_at = x.finished_at
      from jsonb_to_recordset(?::jsonb) as x(id uuid, state jsonb, status text, message text, event_sequence int,
        started_at timestamptz, finished_at timestamptz)
      where d.id = x.id returning 1)`);
    params.push(JSON.stringify(rows.map((r) => r.header)));
  }
  if (serviceRuns !== undefined) {
    parts.push(`s as (${UPSERT_SERVICE_RUNS} returning 1)`);
    params.push(serviceRuns);
  }
  if (outbox !== undefined) {
    parts.push(`o as (${OUTBOX_INSERT} returning 1)`);
    params.push(outbox.json);
  }
  await query(em, `with ${parts.join(', ')} select 1`, params);
}

export async function writeSequences(
  em: EntityManager,
  runs: readonly Pick<RunHead, 'id' | 'eventSequence'>[],
): Promise<void> {
  if (runs.length === 0) return;
  await query(
    em,
    `update deployment d set event_sequence = x.seq from jsonb_to_recordset(?::jsonb) as x(id uuid, seq int) where d.id = x.id`,
    [JSON.stringify(runs.map((r) => ({ id: r.id, seq: r.eventSequence })))],
  );
}

export async function addRequestKey(em: EntityManager, requestId: string, deploymentId: string): Promise<void> {
  await query(em, 'insert into request_key (request_id, deployment_id) values (?, ?)', [requestId, deploymentId]);
}

/** Statuses inserted or replaced in one statement. */
export async function saveServiceStatuses(
  em: EntityManager,
  statuses: readonly ServiceStatus[],
  at: Date,
): Promise<void> {
  if (statuses.length === 0) return;
  await query(
    em,
    `insert into service_status (service_id, environment_id, has_resources, stopped, version, image, state, outputs, updated_at)
     select service_id, environment_id, has_resources, stopped, version, image, state, outputs, ?::timestamptz
       from jsonb_to_recordset(?::jsonb) as x(service_id uuid, environment_id uuid, has_resources boolean,
         stopped boolean, version text, image text, state text, outputs jsonb)
     on conflict (service_id) do update set has_resources = excluded.has_resources, stopped = excluded.stopped,
       version = excluded.version, image = excluded.image, state = excluded.state, outputs = excluded.outputs,
       updated_at = excluded.updated_at`,
    [
      at.toISOString(),
      JSON.stringify(
        statuses.map((s) => ({
          service_id: s.serviceId,
          environment_id: s.environmentId,
          has_resources: s.hasResources,
          stopped: s.stopped,
          version: s.version,
          image: s.image,
          state: s.state,
          outputs: s.outputs,
        })),
      ),
    ],
  );
}

export async function markDeleted(em: EntityManager, environmentId: string): Promise<void> {
  await query(em, 'update lane set deleted = true where environment_id = ?', [environmentId]);
}

/** Runs waiting behind each environment's active one (environments with none are left out). */
export async function queuedByEnvironment(
  em: EntityManager,
): Promise<Array<{ environmentId: string; queued: number }>> {
  const rows = await query<{ environment_id: string; queued: number }>(
    em,
    `select environment_id, count(*)::int as queued from deployment where status = 'QUEUED' group by environment_id`,
  );
  return rows.map((r) => ({ environmentId: r.environment_id, queued: r.queued }));
}
