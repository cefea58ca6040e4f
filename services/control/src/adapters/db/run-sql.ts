import { type EntityManager, OUTBOX_TABLE, query } from '@stageline/db';
import type { control } from '@stageline/proto';
import type { EnvironmentRecord, RunStateRecord } from '../../app/model.ts';
import type { Runtime, Settings } from '../../domain/environment.ts';
import type { ServiceRunState } from '../../domain/run-events.ts';

// The run events' statements, hand-written: most events change nothing and cost one read; a change is
// one locked read and one write (environment, services and outbox rows together). Through the ORM the
// same work loaded and hydrated the whole environment, every definition included, for each event.

interface EnvironmentColumns {
  id: string;
  project: string;
  name: string;
  runtime: string;
  preview: boolean;
  cloned_from_id: string | null;
  settings: Settings | string;
  status: number;
  created_at: Date | string;
  updated_at: Date | string;
}

interface RunStateColumns extends EnvironmentColumns {
  services: ServiceRunState[] | string | null;
}

/** The environment's columns as a record (the driver hands json and timestamps over parsed or as text). */
export function environmentOfColumns(row: EnvironmentColumns): EnvironmentRecord {
  return {
    id: row.id,
    project: row.project,
    name: row.name,
    runtime: row.runtime as Runtime,
    preview: row.preview,
    clonedFromId: row.cloned_from_id ?? '',
    settings: parsed(row.settings),
    status: row.status as control.EnvironmentStatus,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

export function parsed<T>(value: T | string): T {
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}

export const ENVIRONMENT_COLUMNS =
  'e.id, e.project, e.name, e.runtime, e.preview, e.cloned_from_id, e.settings, e.status, e.created_at, e.updated_at';

/** The environment and its services' run state, locked (FOR UPDATE), in one statement. */
export async function lockRunState(em: EntityManager, environmentId: string): Promise<RunStateRecord | undefined> {
  const rows = await query<RunStateColumns>(
    em,
    `select ${ENVIRONMENT_COLUMNS},
        (select json_agg(json_build_object('id', s.id, 'hasResources', s.has_resources, 'endpoints', s.endpoints)
                         order by s.id)
           from service s where s.environment_id = e.id) as services
       from environment e where e.id = ? for update of e`,
    [environmentId],
  );
  const row = rows[0];
  if (row === undefined) return undefined;
  return { environment: environmentOfColumns(row), services: parsed(row.services) ?? [] };
}

/** An outbox row as `@stageline/db`'s `enqueue` writes it. */
export interface OutboxRow {
  id: string;
  subject: string;
  payload: Uint8Array;
  headers: Record<string, string>;
}

const OUTBOX_ROWS = `rows from (jsonb_to_recordset(?::jsonb) as (id uuid, subject text, payload text, headers jsonb))
           with ordinality as o(id, subject, payload, headers, n)`;

function outboxJson(outbox: readonly OutboxRow[]): string {
  return JSON.stringify(
    outbox.map((o) => ({
      id: o.id,
      subject: o.subject,
      payload: Buffer.from(o.payload).toString('base64'),
      headers: o.headers,
    })),
  );
}

/**
 * Writes the environment's status, the given services' run state (and, `clearSecrets`, drops their
 * secret values) and the outbox rows, in one statement.
 */
export async function writeRunState(
  em: EntityManager,
  environmentId: string,
  write: { status: control.EnvironmentStatus; services: ServiceRunState[]; clearSecrets: boolean },
  outbox: readonly OutboxRow[],
): Promise<void> {
  await query(
    em,
    `with env as (update environment set status = ? where id = ?),
      svc as (
        update service s
           set has_resources = u.has_resources,
               endpoints = u.endpoints,
               secrets = case when ? then '{}'::jsonb else s.secrets end
          from jsonb_to_recordset(?::jsonb) as u(id uuid, has_resources boolean, endpoints jsonb)
         where s.id = u.id and s.environment_id = ?)
    insert into ${OUTBOX_TABLE} (id, subject, payload, headers, created_at)
    select o.id, o.subject, decode(o.payload, 'base64'), o.headers, now() from ${OUTBOX_ROWS} order by o.n`,
    [
      write.status,
      environmentId,
      write.clearSecrets,
      JSON.stringify(write.services.map((s) => ({ id: s.id, has_resources: s.hasResources, endpoints: s.endpoints }))),
      environmentId,
      outboxJson(outbox),
    ],
  );
}

/**
 * Sets the environment's status with its outbox rows in one statement — unless it has that status
 * already, or its row changed since `updatedAt` (the rows were made from what it was then). Returns the
 * status it had (undefined: no such environment) and whether this wrote.
 */
export async function setStatusIfUnchanged(
  em: EntityManager,
  environmentId: string,
  status: control.EnvironmentStatus,
  updatedAt: Date,
  outbox: readonly OutboxRow[],
): Promise<{ before: control.EnvironmentStatus | undefined; written: boolean }> {
  const rows = await query<{ before: number | null; written: number | string }>(
    em,
    `with u as (
        update environment set status = ? where id = ? and status <> ? and updated_at = ?::timestamptz returning id),
      ins as (
        insert into ${OUTBOX_TABLE} (id, subject, payload, headers, created_at)
        select o.id, o.subject, decode(o.payload, 'base64'), o.headers, now() from ${OUTBOX_ROWS}, u order by o.n
        returning 1)
    select (select status from environment where id = ?) as before, (select count(*) from u) as written`,
    [status, environmentId, status, updatedAt.toISOString(), outboxJson(outbox), environmentId],
  );
  const row = rows[0];
  return {
    before: row?.before === null || row?.before === undefined ? undefined : (row.before as control.EnvironmentStatus),
    written: Number(row?.written ?? 0) > 0,
  };
}
