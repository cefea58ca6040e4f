import type { Logger } from '@stageline/log';
import { LOCK_OUTBOX, lockKey, quoteIdent } from './admin.ts';
import type { Database } from './database.ts';
import { OUTBOX_TABLE, OutboxMessage } from './outbox.ts';

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
  /** Published rows older than this are deleted (default 1 day). */
  retentionMs?: number;
  /** Upper bound of the retry backoff after a failed publish (default 10 s). */
  maxBackoffMs?: number;
}

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
  readonly #retentionMs: number;
  readonly #maxBackoffMs: number;
  readonly #lockKey: number;
  readonly #table: string;

  #running = false;
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
    this.#retentionMs = options.retentionMs ?? 24 * 60 * 60 * 1000;
    this.#maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.#lockKey = lockKey(options.db.schema);
    this.#table = `${quoteIdent(options.db.schema)}.${OUTBOX_TABLE}`;
  }

  /** Starts the background loop. Idempotent. */
  start(): void {
    if (this.#running) {
      return;
    }
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops the loop after the batch in flight (whose published rows are committed). Idempotent. */
  async stop(): Promise<void> {
    this.#running = false;
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
      const [lock] = await tx.execute<{ locked: boolean }[]>('select pg_try_advisory_xact_lock(?, ?) as locked', [
        LOCK_OUTBOX,
        this.#lockKey,
      ]);
      if (!lock?.locked) {
        return { leader: false, published: 0, more: false };
      }
      const rows = await tx.execute<Row[]>(
        `select id, subject, payload, headers from ${this.#table} where published_at is null order by seq limit ?`,
        [this.#batchSize],
      );
      const done: string[] = [];
      let error: unknown;
      for (const row of rows) {
        try {
          await this.#publish(row.subject, new Uint8Array(row.payload), {
            msgId: row.id,
            headers: row.headers ?? {},
          });
        } catch (e) {
          // Stop at the first failure: later rows must not overtake this one.
          error = e;
          break;
        }
        done.push(row.id);
      }
      if (done.length > 0) {
        await tx.nativeUpdate(OutboxMessage, { id: { $in: done } }, { publishedAt: new Date() });
      }
      const result: BatchResult = { leader: true, published: done.length, more: rows.length === this.#batchSize };
      if (error !== undefined) {
        result.error = error;
      }
      return result;
    });
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
