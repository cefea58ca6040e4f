import { defineEntity, p } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { traceHeaders } from '@stageline/telemetry';
import { newId } from './ids.ts';
import { type DbMigration, sqlMigration } from './migrations.ts';
import { query } from './query.ts';

export const OUTBOX_TABLE = 'outbox_message';

const OutboxMessageSchema = defineEntity({
  name: 'OutboxMessage',
  tableName: OUTBOX_TABLE,
  properties: {
    /** UUIDv7; becomes `Nats-Msg-Id`, so JetStream drops a re-published duplicate. Unique across services. */
    id: p.uuid().primary(),
    subject: p.text(),
    payload: p.uint8array(),
    headers: p.json<Record<string, string>>(),
    createdAt: p.datetime(),
    publishedAt: p.datetime().nullable(),
    // `seq` (bigint identity: the publish order) is deliberately not mapped: the database assigns it,
    // and only the relay reads it.
  },
});

/** One event waiting to be (or already) published; written in the same transaction as the state change. */
export class OutboxMessage extends OutboxMessageSchema.class {}
OutboxMessageSchema.setClass(OutboxMessage);

/**
 * Creates `<schema>.outbox_message`. Services put it in their migration list (its name is recorded like any
 * other migration, so adding it later to an existing service is fine).
 */
export const outboxMigration: DbMigration = sqlMigration('stageline-outbox-0001', [
  `create table ${OUTBOX_TABLE} (
    id uuid primary key,
    -- commit order is unknowable, insertion order is the best proxy: a sequence, not the client clock
    seq bigint generated always as identity,
    subject text not null,
    payload bytea not null,
    headers jsonb not null default '{}',
    created_at timestamptz not null default now(),
    published_at timestamptz null
  )`,
  `create index ${OUTBOX_TABLE}_pending_idx on ${OUTBOX_TABLE} (seq) where published_at is null`,
  `create index ${OUTBOX_TABLE}_published_idx on ${OUTBOX_TABLE} (published_at) where published_at is not null`,
]);

export const OUTBOX_SET_ASIDE_TABLE = 'outbox_set_aside';

/**
 * Creates `<schema>.outbox_set_aside`: rows the relay could not publish (over the bus's max_payload, a
 * subject the bus refuses, ...), moved out of the way with the reason so the rows after them flow on.
 * Services list it after `outboxMigration` (at the end of their list when they already ran).
 */
export const outboxSetAsideMigration: DbMigration = sqlMigration('stageline-outbox-0002-set-aside', [
  `create table ${OUTBOX_SET_ASIDE_TABLE} (
    id uuid primary key,
    seq bigint not null,
    subject text not null,
    payload bytea not null,
    headers jsonb not null default '{}',
    created_at timestamptz not null,
    set_aside_at timestamptz not null default now(),
    attempts integer not null,
    reason text not null
  )`,
]);

export interface OutboxEntry {
  /**
   * A UUID for the row and `Nats-Msg-Id` (default: `newId()`). Pass your own to reuse it in the payload,
   * e.g. as the event id. Publish order does not depend on it.
   */
  id?: string;
  subject: string;
  payload: Uint8Array;
  headers?: Record<string, string>;
}

/**
 * Adds an event to the outbox through `em`: it is written when `em` flushes, i.e. in the caller's
 * transaction (`em.transactional`) or flush, together with the state change. Returns its id (the future
 * `Nats-Msg-Id`). The active span's trace context is stored in its headers, so the consumers' spans
 * continue the writer's trace. Call `relay.kick()` after the commit to publish without waiting for the next poll.
 */
export function enqueue(em: EntityManager, entry: OutboxEntry): string {
  const id = entry.id ?? newId();
  em.create(OutboxMessage, {
    id,
    subject: entry.subject,
    payload: entry.payload,
    // The writer's span goes along (W3C `traceparent`), unless the entry carries one (a row re-enqueued).
    headers: entry.headers?.traceparent === undefined ? { ...traceHeaders(), ...entry.headers } : { ...entry.headers },
    createdAt: new Date(),
    publishedAt: null,
  });
  return id;
}

/**
 * Outbox rows as one JSON parameter for `OUTBOX_INSERT` (ids made where missing, the active span's
 * trace context added as `enqueue` does): for hand-written statements that write the outbox together
 * with their own changes. Returns the parameter and the rows' ids, in order.
 */
export function outboxRows(entries: readonly OutboxEntry[]): { json: string; ids: string[] } {
  const trace = traceHeaders();
  const rows = entries.map((e) => ({
    id: e.id ?? newId(),
    subject: e.subject,
    payload: Buffer.from(e.payload).toString('base64'),
    headers: e.headers?.traceparent === undefined ? { ...trace, ...e.headers } : { ...e.headers },
  }));
  return { json: JSON.stringify(rows), ids: rows.map((r) => r.id) };
}

/**
 * The insert of `outboxRows(…).json` (its one `?`), in the given order (their `seq`): a statement of
 * its own, or a data-modifying CTE of a larger one. Unqualified: the service's schema is first on the
 * search_path.
 */
export const OUTBOX_INSERT = `insert into ${OUTBOX_TABLE} (id, subject, payload, headers, created_at)
     select o.id, o.subject, decode(o.payload, 'base64'), o.headers, now()
       from rows from (jsonb_to_recordset(?::jsonb) as (id uuid, subject text, payload text, headers jsonb))
            with ordinality as o(id, subject, payload, headers, n)
      order by o.n`;

/**
 * Writes these events to the outbox now, in one statement, through `em` (in its transaction): what
 * `enqueue` does row by row at the next flush, for hot paths that write by hand. Rows keep the given
 * order (their `seq`). Returns their ids.
 */
export async function insertOutbox(em: EntityManager, entries: readonly OutboxEntry[]): Promise<string[]> {
  if (entries.length === 0) return [];
  const rows = outboxRows(entries);
  await query(em, OUTBOX_INSERT, [rows.json]);
  return rows.ids;
}
