// The RunStore port (app/run-store.ts) on PostgreSQL: hand-written statements (run-sql.ts), each unit
// of work retried as a whole on a lost connection (Database.retry), a lane transaction holding the
// environment's lane row, messages written to the outbox in the same transaction.
import { type Database, type EntityManager, enqueue, OUTBOX_TABLE, outboxRows } from '@stageline/db';
import { inSpan } from '@stageline/telemetry';
import type {
  LaneTx,
  OutboxEntry,
  PublishedJob,
  RecoveryTx,
  RunReads,
  RunRecord,
  RunStore,
  ServiceStatus,
} from '../../app/run-store.ts';
import type { RunState } from '../../domain/model.ts';
import * as sql from './run-sql.ts';

/** "SL" 3: the advisory lock namespace of lost-job recovery (packages/db uses "SL" 1 and 2). */
const LOCK_RECOVERY = 0x53_4c_03;

function readsOf(em: EntityManager): RunReads {
  return {
    run: (id) => sql.readRun(em, id),
    runOfRequest: (requestId) => sql.runOfRequest(em, requestId),
    environmentOf: (id) => sql.environmentOfRun(em, id),
    openRuns: (environmentId) => sql.openRuns(em, environmentId),
    runState: (id) => sql.runState(em, id),
    recentStates: (environmentId, limit) => sql.recentStates(em, environmentId, limit),
    resumedBy: (environmentId, runId) => sql.resumedBy(em, environmentId, runId),
    serviceStatuses: (environmentId) => sql.serviceStatuses(em, environmentId),
    laneDeleted: (environmentId) => sql.laneDeleted(em, environmentId),
    runs: (environmentId, page) => sql.runsPage(em, environmentId, page),
  };
}

const toOutbox = (em: EntityManager, entry: OutboxEntry) => {
  enqueue(em, entry);
};

/**
 * A lane transaction. Its messages are kept until `fn` is done (a savepoint rolled back drops its own);
 * progress writes are kept too and go out with them in one statement at the end — or before any other
 * statement, so every read and write sees them. Runs and service statuses prefetched for a batch are
 * served from memory until written.
 */
function laneTxOf(em: EntityManager) {
  const outbox: OutboxEntry[] = [];
  let savepoints = 0;
  const pending = new Map<string, sql.ProgressRow>();
  const runs = new Map<string, RunRecord>();
  const statuses = new Map<string, ServiceStatus[]>();
  /** Pending progress, written now: before any other statement. */
  const flush = async () => {
    if (pending.size === 0) return;
    const rows = [...pending.values()];
    pending.clear();
    await sql.writeProgressMany(em, rows, undefined);
  };
  const reads = readsOf(em);
  const flushed =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      await flush();
      return fn(...args);
    };
  const tx: LaneTx = {
    ...reads,
    run: async (id) => {
      const known = runs.get(id);
      if (known !== undefined) return known;
      await flush();
      return reads.run(id);
    },
    serviceStatuses: async (environmentId) => {
      const known = statuses.get(environmentId);
      if (known !== undefined) return known;
      await flush();
      return reads.serviceStatuses(environmentId);
    },
    runOfRequest: flushed(reads.runOfRequest),
    environmentOf: flushed(reads.environmentOf),
    openRuns: flushed(reads.openRuns),
    runState: flushed(reads.runState),
    recentStates: flushed(reads.recentStates),
    resumedBy: flushed(reads.resumedBy),
    laneDeleted: flushed(reads.laneDeleted),
    runs: flushed(reads.runs),
    prefetch: async (runIds, environmentIds) => {
      await flush();
      for (const [id, run] of await sql.readRuns(em, runIds)) runs.set(id, run);
      const found = await sql.serviceStatusesOf(em, environmentIds);
      for (const environmentId of environmentIds) {
        statuses.set(
          environmentId,
          found.filter((s) => s.environmentId === environmentId),
        );
      }
    },
    saveRun: async (run) => {
      runs.delete(run.id);
      await flush();
      await sql.saveRun(em, run);
    },
    // The run's header, and a row per service run that changed: kept for the end of the transaction.
    writeProgress: async (run, changed) => {
      runs.delete(run.id);
      const row = sql.progressRow(run, changed);
      const earlier = pending.get(run.id);
      if (earlier !== undefined)
        for (const [position, s] of earlier.services) if (!row.services.has(position)) row.services.set(position, s);
      pending.set(run.id, row);
    },
    writeSequences: async (list) => {
      for (const r of list) runs.delete(r.id);
      await flush();
      await sql.writeSequences(em, list);
    },
    addRequestKey: async (requestId, deploymentId) => {
      await flush();
      await sql.addRequestKey(em, requestId, deploymentId);
    },
    saveServiceStatuses: async (list, at) => {
      for (const s of list) statuses.delete(s.environmentId);
      await flush();
      await sql.saveServiceStatuses(em, list, at);
    },
    markDeleted: async (environmentId) => {
      await flush();
      await sql.markDeleted(em, environmentId);
    },
    enqueue: (entry) => {
      outbox.push(entry);
    },
    apart: async (fn) => {
      const name = `apart_${++savepoints}`;
      const mark = outbox.length;
      await flush();
      await em.execute(`savepoint ${name}`);
      try {
        const value = await fn();
        await flush();
        await em.execute(`release savepoint ${name}`);
        return { ok: true, value };
      } catch (error) {
        // What the failed part wrote is undone: neither its pending writes nor what it read stay.
        pending.clear();
        runs.clear();
        statuses.clear();
        await em.execute(`rollback to savepoint ${name}`);
        outbox.length = mark;
        return { ok: false, error };
      }
    },
  };
  /** The end of `fn`: the pending progress and every message, in one statement. */
  const finish = async () => {
    const rows = [...pending.values()];
    pending.clear();
    await sql.writeProgressMany(em, rows, outbox.length > 0 ? outboxRows(outbox) : undefined);
  };
  return { tx, finish };
}

const date = (v: Date | string | null) => (v === null ? null : new Date(v).getTime());

/**
 * One transaction holding lanes (`lock` takes them and says which are deleted); the progress it kept and
 * its messages are written in one statement before the commit (the relay publishes them after it).
 */
function laneTransaction<D, T>(
  db: Database,
  attributes: Record<string, string | number>,
  lock: (em: EntityManager) => Promise<D>,
  fn: (tx: LaneTx, deleted: D) => Promise<T>,
): Promise<T> {
  return inSpan('planner decide', { attributes }, () =>
    db.retry("changing an environment's runs", (outer) =>
      outer.transactional(async (em) => {
        const deleted = await lock(em);
        const lane = laneTxOf(em);
        const result = await fn(lane.tx, deleted);
        await lane.finish();
        return result;
      }),
    ),
  );
}

export function pgRunStore(db: Database): RunStore {
  return {
    read: (what, fn) => db.retry(what, (em) => fn(readsOf(em))),
    // A lost connection runs the whole transaction again on what it reads then: facts are applied by
    // sequence, requests by request id, runs started by status, so a commit that did happen is not
    // redone. Every decision is one span (traces: the jobs and events it writes carry it on).
    inLane: (environmentId, fn) =>
      laneTransaction(db, { 'stageline.environment.id': environmentId }, (em) => sql.lockLane(em, environmentId), fn),
    inLanes: (environmentIds, fn) =>
      laneTransaction(
        db,
        { 'stageline.environments': environmentIds.length },
        (em) => sql.lockLanes(em, environmentIds),
        fn,
      ),
    activeRuns: () => db.retry('reading running runs', (em) => sql.activeRuns(em)),
    queueDepths: () => db.retry('reading queued runs', (em) => sql.queuedByEnvironment(em)),
    inRecovery: (fn) =>
      db.retry('re-dispatching lost jobs', (outer) =>
        outer.transactional(async (em) => {
          await em.execute('select pg_advisory_xact_lock(?, 0)', [LOCK_RECOVERY]);
          const tx: RecoveryTx = {
            activeRuns: async () =>
              (
                await em.execute<{ id: string; state: string | null }[]>(
                  `select d.id, ${sql.STATE} as state from deployment d where d.status in ('RUNNING', 'CANCELING')`,
                )
              ).map((r) => ({ id: r.id, state: r.state === null ? null : (JSON.parse(r.state) as RunState) })),
            publishedJobs: async (subjects, prefixes) => {
              if (subjects.length === 0 && prefixes.length === 0) return [];
              const conditions = [
                ...(subjects.length > 0 ? [`subject in (${subjects.map(() => '?').join(', ')})`] : []),
                ...prefixes.map(() => 'subject like ?'),
              ];
              const rows = await em.execute<
                {
                  subject: string;
                  payload: Uint8Array;
                  headers: Record<string, string> | null;
                  published_at: Date | string | null;
                }[]
              >(
                `select subject, payload, headers, published_at from ${OUTBOX_TABLE} where ${conditions.join(' or ')} order by seq`,
                [...subjects, ...prefixes.map((p) => `${likeEscape(p)}%`)],
              );
              return rows.map(
                (r): PublishedJob => ({
                  subject: r.subject,
                  payload: new Uint8Array(r.payload),
                  headers: r.headers,
                  publishedAt: date(r.published_at),
                }),
              );
            },
            enqueue: (entry) => toOutbox(em, entry),
          };
          return fn(tx);
        }),
      ),
  };
}

const likeEscape = (text: string): string => text.replace(/[\\%_]/g, (c) => `\\${c}`);
