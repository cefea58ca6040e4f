// The RunStore port (app/run-store.ts) on PostgreSQL: hand-written statements (run-sql.ts), each unit
// of work retried as a whole on a lost connection (Database.retry), a lane transaction holding the
// environment's lane row, messages written to the outbox in the same transaction.
import { type Database, type EntityManager, enqueue, insertOutbox, OUTBOX_TABLE } from '@stageline/db';
import { inSpan } from '@stageline/telemetry';
import type { LaneTx, OutboxEntry, PublishedJob, RecoveryTx, RunReads, RunStore } from '../../app/run-store.ts';
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

/** A lane transaction; its messages are kept until `fn` is done (a savepoint rolled back drops its own). */
function laneTxOf(em: EntityManager, outbox: OutboxEntry[]): LaneTx {
  let savepoints = 0;
  return {
    ...readsOf(em),
    saveRun: (run) => sql.saveRun(em, run),
    // The run's header, and a row per service run that changed.
    writeProgress: (run, changed) => sql.writeProgress(em, run, changed),
    writeSequences: (runs) => sql.writeSequences(em, runs),
    addRequestKey: (requestId, deploymentId) => sql.addRequestKey(em, requestId, deploymentId),
    saveServiceStatuses: (statuses, at) => sql.saveServiceStatuses(em, statuses, at),
    markDeleted: (environmentId) => sql.markDeleted(em, environmentId),
    enqueue: (entry) => {
      outbox.push(entry);
    },
    apart: async (fn) => {
      const name = `apart_${++savepoints}`;
      const mark = outbox.length;
      await em.execute(`savepoint ${name}`);
      try {
        const value = await fn();
        await em.execute(`release savepoint ${name}`);
        return { ok: true, value };
      } catch (error) {
        await em.execute(`rollback to savepoint ${name}`);
        outbox.length = mark;
        return { ok: false, error };
      }
    },
  };
}

const date = (v: Date | string | null) => (v === null ? null : new Date(v).getTime());

export function pgRunStore(db: Database): RunStore {
  return {
    read: (what, fn) => db.retry(what, (em) => fn(readsOf(em))),
    inLane: (environmentId, fn) =>
      // A lost connection runs the whole transaction again on what it reads then: facts are applied by
      // sequence, requests by request id, runs started by status, so a commit that did happen is not
      // redone. Every decision is one span (traces: the jobs and events it writes carry it on).
      inSpan('planner decide', { attributes: { 'stageline.environment.id': environmentId } }, () =>
        db.retry("changing an environment's runs", (outer) =>
          outer.transactional(async (em) => {
            const deleted = await sql.lockLane(em, environmentId);
            const outbox: OutboxEntry[] = [];
            const result = await fn(laneTxOf(em, outbox), deleted);
            // Written in one statement before the commit (the relay publishes them after it).
            await insertOutbox(em, outbox);
            return result;
          }),
        ),
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
