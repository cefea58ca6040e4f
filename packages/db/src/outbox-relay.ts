import type { EntityManager } from '@mikro-orm/postgresql';
import { DomainError } from '@stageline/errors';
import type { Logger } from '@stageline/log';
import { metrics, trackOutbox } from '@stageline/telemetry';
import { LOCK_OUTBOX, lockKey, quoteIdent } from './admin.ts';
import type { Database } from './database.ts';
import { OUTBOX_SET_ASIDE_TABLE, OUTBOX_TABLE, OutboxMessage } from './outbox.ts';
import { query } from './query.ts';

/**
 * Publishes one message; resolves once the broker has it (for JetStream: the publish ack). It should time
 * out on its own: the relay's transaction stays open while it runs.
 */
export type OutboxPublish = (
  subject: string,
  data: Uint8Array,
  opts: { msgId: string; headers: Record<string, string> },
) => Promise<unknown>;

export interface OutboxRelayOptions {
  db: Pick<Database, 'em' | 'schema'>;
  publish: OutboxPublish;
  log: Logger;
  /** How often to look for new rows when not kicked (default 200 ms). */
  pollIntervalMs?: number;
  /** Rows per transaction (default 100). */
  batchSize?: number;
  /**
   * Publishes in flight at once (default 64): a batch's rows go out without waiting for each ack in turn,
   * and are marked published in order as their acks arrive. 1 publishes one row at a time.
   */
  window?: number;
  /** Published rows older than this are deleted (default 1 day). */
  retentionMs?: number;
  /** Upper bound of the retry backoff after a failed publish (default 10 s). */
  maxBackoffMs?: number;
  /**
   * Tries of a row whose publish fails for a reason of its own (`isPermanent`) before it is set aside
   * (default 3). A row failing because the bus is away is never set aside: every row would fail alike.
   */
  maxAttempts?: number;
  /**
   * Whether a publish error belongs to the row rather than to the bus: default, a DomainError that is
   * not retryable (the bus maps max_payload, a refused subject or msgId, a refusing stream to those).
   */
  isPermanent?: (error: unknown) => boolean;
}

/** A row the relay gave up on, in `<schema>.outbox_set_aside`. */
export interface SetAsideRow {
  id: string;
  seq: string;
  subject: string;
  bytes: number;
  createdAt: Date;
  setAsideAt: Date;
  attempts: number;
  reason: string;
}

const permanentByDefault = (error: unknown): boolean => error instanceof DomainError && !error.retryable;

interface Row {
  id: string;
  subject: string;
  payload: Uint8Array;
  headers: Record<string, string> | null;
}

interface BatchResult {
  /** False when another relay holds the schema's outbox lock. */
  leader: boolean;
  published: number;
  /** A full batch was read: there may be more right away. */
  more: boolean;
  error?: unknown;
}

const CLEANUP_EVERY_MS = 60_000;

/**
 * Moves outbox rows to the bus: in `seq` order, marking each published only after `publish` resolved
 * (at-least-once; the row id as `Nats-Msg-Id` lets JetStream drop the duplicates a crash can cause).
 *
 * Pipelined: up to `window` publishes are in flight at once, started in `seq` order on one connection
 * (which keeps their order to the server), their outcomes taken in the same order. At the first row that
 * failed the batch stops: the rows before it are marked, it and every row after it stay pending and are
 * published again from it next turn — a row after it that did reach the stream is dropped there as a
 * duplicate (same `Nats-Msg-Id`). A row the server never got is one a broken connection lost, and then
 * so were the rows written behind it (no row is started after a failure is seen: the window only moves
 * on past rows whose ack arrived), so what the stream holds stays in `seq` order. (A row refused on its
 * own while the rows behind it are accepted — see `isPermanent` — is overtaken by them: a later try of it
 * that succeeds lands after them.)
 *
 * Several relays (one per service process) may run on one schema: each batch runs in a transaction that
 * first takes a transaction-level advisory lock for the schema's outbox, so exactly one relay publishes
 * at a time and the order is kept; the others skip the turn. A publish failure never escapes: the rows
 * already published in the batch are committed, the rest are retried with exponential backoff.
 */
export class OutboxRelay {
  readonly #db: Pick<Database, 'em' | 'schema'>;
  readonly #publish: OutboxPublish;
  readonly #log: Logger;
  readonly #pollIntervalMs: number;
  readonly #batchSize: number;
  readonly #window: number;
  readonly #retentionMs: number;
  readonly #maxBackoffMs: number;
  readonly #maxAttempts: number;
  readonly #isPermanent: (error: unknown) => boolean;
  readonly #lockKey: number;
  readonly #table: string;
  readonly #setAsideTable: string;
  /** Tries of the rows that failed for a reason of their own, by row id (this process's count). */
  readonly #attempts = new Map<string, number>();
  #setAside = 0;

  #running = false;
  #untrack: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #kicked = false;
  #wake: (() => void) | undefined;
  #lastCleanup = 0;
  /** Serializes batches of the loop and of flush() within this process. */
  #turn: Promise<unknown> = Promise.resolve();

  constructor(options: OutboxRelayOptions) {
    this.#db = options.db;
    this.#publish = options.publish;
    this.#log = options.log.child({ component: 'outbox-relay', schema: options.db.schema });
    this.#pollIntervalMs = options.pollIntervalMs ?? 200;
    this.#batchSize = options.batchSize ?? 100;
    this.#window = Math.max(1, options.window ?? 64);
    this.#retentionMs = options.retentionMs ?? 24 * 60 * 60 * 1000;
    this.#maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.#maxAttempts = Math.max(1, options.maxAttempts ?? 3);
    this.#isPermanent = options.isPermanent ?? permanentByDefault;
    this.#lockKey = lockKey(options.db.schema);
    this.#table = `${quoteIdent(options.db.schema)}.${OUTBOX_TABLE}`;
    this.#setAsideTable = `${quoteIdent(options.db.schema)}.${OUTBOX_SET_ASIDE_TABLE}`;
  }

  /** Rows this relay set aside since it started (the table holds every process's). */
  get setAsideCount(): number {
    return this.#setAside;
  }

  /** Starts the background loop. Idempotent. */
  start(): void {
    if (this.#running) {
      return;
    }
    this.#running = true;
    this.#untrack = trackOutbox({ schema: this.#db.schema, backlog: () => this.#backlog() });
    this.#loop = this.#run();
  }

  /** Rows not yet published and the age of the oldest (for the outbox gauges at scrape time). */
  async #backlog(): Promise<{ rows: number; oldestSeconds: number }> {
    const [row] = await this.#db.em().execute<{ rows: number; oldest: number | string | null }[]>(
      `select count(*)::int as rows, extract(epoch from now() - min(created_at))::float8 as oldest
         from ${this.#table} where published_at is null`,
    );
    return { rows: row?.rows ?? 0, oldestSeconds: Math.max(0, Number(row?.oldest ?? 0)) };
  }

  /** Stops the loop after the batch in flight (whose published rows are committed). Idempotent. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#untrack?.();
    this.#wakeUp();
    await this.#loop;
    this.#loop = undefined;
  }

  /** Look for rows now, e.g. right after committing a transaction that enqueued some. */
  kick(): void {
    this.#kicked = true;
    this.#wakeUp();
  }

  /**
   * Publishes everything pending now and resolves when the outbox is empty (of rows committed before the
   * call). Throws if a publish fails or another relay keeps the lock past `timeoutMs` (default 30 s).
   */
  async flush(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const result = await this.#serialized(() => this.#batch());
      if (result.error !== undefined) {
        throw result.error;
      }
      if (result.leader && !result.more) {
        return;
      }
      if (Date.now() > deadline) {
        throw new Error('outbox flush timed out: another relay holds the outbox lock');
      }
      if (!result.leader) {
        await sleep(20);
      }
    }
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (this.#running) {
      let delay = this.#pollIntervalMs;
      try {
        const result = await this.#serialized(() => this.#batch());
        if (result.error !== undefined) {
          failures++;
          delay = Math.min(this.#maxBackoffMs, 100 * 2 ** Math.min(failures - 1, 16));
          this.#log.warn({ err: result.error, failures, retryInMs: delay }, 'outbox publish failed; will retry');
        } else {
          failures = 0;
          if (result.more) {
            delay = 0;
          }
          if (result.leader) {
            await this.#maybeCleanup();
          }
        }
      } catch (e) {
        // Database trouble (connection lost, ...): same backoff, never crash the process.
        failures++;
        delay = Math.min(this.#maxBackoffMs, 100 * 2 ** Math.min(failures - 1, 16));
        this.#log.warn({ err: e, failures, retryInMs: delay }, 'outbox relay turn failed; will retry');
      }
      if (delay > 0 && this.#running) {
        // After a failure, a kick must not defeat the backoff.
        await this.#sleep(delay, failures === 0);
      }
    }
  }

  #serialized<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#turn.then(fn, fn);
    this.#turn = next.catch(() => {});
    return next;
  }

  async #batch(): Promise<BatchResult> {
    const em = this.#db.em();
    return em.transactional(async (tx) => {
      const [lock] = await query<{ locked: boolean }>(tx, 'select pg_try_advisory_xact_lock(?, ?) as locked', [
        LOCK_OUTBOX,
        this.#lockKey,
      ]);
      if (!lock?.locked) {
        return { leader: false, published: 0, more: false };
      }
      const rows = await query<Row>(
        tx,
        `select id, subject, payload, headers from ${this.#table} where published_at is null order by seq limit ?`,
        [this.#batchSize],
      );
      const done: string[] = [];
      let error: unknown;
      // Publishes started ahead, by row index: each settles to undefined (published) or its error.
      const started: Promise<{ error: unknown } | undefined>[] = [];
      const startUpTo = (end: number) => {
        for (let i = started.length; i < Math.min(end, rows.length); i++) {
          const row = rows[i]!;
          started.push(
            Promise.resolve()
              .then(() =>
                this.#publish(row.subject, new Uint8Array(row.payload), { msgId: row.id, headers: row.headers ?? {} }),
              )
              .then(
                () => undefined,
                (e: unknown) => ({ error: e }),
              ),
          );
        }
      };
      for (const [i, row] of rows.entries()) {
        // The window moves on only past rows whose outcome is known and fine.
        startUpTo(i + this.#window);
        const failed = await started[i]!;
        if (failed !== undefined) {
          const e = failed.error;
          if (this.#isPermanent(e)) {
            const attempts = (this.#attempts.get(row.id) ?? 0) + 1;
            this.#attempts.set(row.id, attempts);
            if (attempts >= this.#maxAttempts) {
              // Its own fault, tried enough: out of the way, with the reason, and the rows after it flow on.
              await this.#setAsideRow(tx, row, attempts, e);
              continue;
            }
          }
          // Stop at the first failure: later rows must not overtake this one (those already sent are
          // published again with it next turn, and dropped by the stream as duplicates).
          error = e;
          break;
        }
        this.#attempts.delete(row.id);
        done.push(row.id);
      }
      // Nothing of this turn still in flight once it ends (the rows after a failure settle too).
      await Promise.all(started);
      if (done.length > 0) {
        await query(tx, `update ${this.#table} set published_at = now() where id = any(?::uuid[])`, [done]);
      }
      const result: BatchResult = { leader: true, published: done.length, more: rows.length === this.#batchSize };
      if (error !== undefined) {
        result.error = error;
      }
      return result;
    });
  }

  async #setAsideRow(tx: EntityManager, row: Row, attempts: number, error: unknown): Promise<void> {
    const reason = error instanceof Error ? error.message : String(error);
    await tx.execute(
      `insert into ${this.#setAsideTable} (id, seq, subject, payload, headers, created_at, attempts, reason)
         select id, seq, subject, payload, headers, created_at, ?, ? from ${this.#table} where id = ?`,
      [attempts, reason, row.id],
    );
    await tx.execute(`delete from ${this.#table} where id = ?`, [row.id]);
    this.#attempts.delete(row.id);
    this.#setAside++;
    metrics.outboxSetAside.inc({ schema: this.#db.schema });
    this.#log.error(
      { outboxId: row.id, subject: row.subject, bytes: row.payload.length, attempts, reason, setAside: this.#setAside },
      `outbox row set aside: it cannot be published (${reason}); the rows after it go on (see ${OUTBOX_SET_ASIDE_TABLE})`,
    );
  }

  async #maybeCleanup(): Promise<void> {
    const now = Date.now();
    if (now - this.#lastCleanup < CLEANUP_EVERY_MS) {
      return;
    }
    this.#lastCleanup = now;
    const deleted = await this.#db
      .em()
      .nativeDelete(OutboxMessage, { publishedAt: { $ne: null, $lt: new Date(now - this.#retentionMs) } });
    if (deleted > 0) {
      this.#log.debug({ deleted }, 'old published outbox rows deleted');
    }
  }

  #sleep(ms: number, wakeOnKick: boolean): Promise<void> {
    if (wakeOnKick && this.#kicked) {
      this.#kicked = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(finish, ms);
      this.#wake = () => {
        if (!this.#running || (wakeOnKick && this.#kicked)) {
          this.#kicked = false;
          finish();
        }
      };
    });
  }

  #wakeUp(): void {
    this.#wake?.();
  }
}

/** The rows set aside in `db`'s schema, oldest first: what an operator lists (`stageline-outbox list`). */
export async function listSetAside(db: Pick<Database, 'em' | 'schema'>, limit = 100): Promise<SetAsideRow[]> {
  const rows = await db.em().execute<
    {
      id: string;
      seq: string;
      subject: string;
      bytes: number;
      created_at: Date;
      set_aside_at: Date;
      attempts: number;
      reason: string;
    }[]
  >(
    `select id, seq::text as seq, subject, octet_length(payload) as bytes, created_at, set_aside_at, attempts, reason
       from ${quoteIdent(db.schema)}.${OUTBOX_SET_ASIDE_TABLE} order by set_aside_at, seq limit ?`,
    [limit],
  );
  return rows.map((r) => ({
    id: r.id,
    seq: r.seq,
    subject: r.subject,
    bytes: Number(r.bytes),
    createdAt: new Date(r.created_at),
    setAsideAt: new Date(r.set_aside_at),
    attempts: Number(r.attempts),
    reason: r.reason,
  }));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
