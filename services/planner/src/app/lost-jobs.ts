// Re-dispatches the jobs a lost NATS store took along (domain/recovery.ts decides which). Watches the
// job streams' creation times: at start, and whenever a stream is new (re-provisioned after the NATS
// host lost its store), it compares them with the outbox's record of each waiting job's last publication
// and enqueues the same job again. Safe from several planner processes and to run twice: it works under a
// transaction-level lock (RunStore.inRecovery), and a job published after its stream's creation is never lost.
import type { Subjects } from '@stageline/bus';
import type { Logger } from '@stageline/log';
import { bus } from '@stageline/proto';
import type { JobRole } from '../domain/model.ts';
import { type DispatchedJob, dispatchedJobs, lostJobs } from '../domain/recovery.ts';
import type { PublishedJob, RunStore } from './run-store.ts';

export interface LostJobDeps {
  store: RunStore;
  subjects: Subjects;
  /** When the role's job stream was created (ms); undefined while it is missing. */
  streamCreatedAt(role: JobRole): Promise<number | undefined>;
  /** After a commit that enqueued jobs: the relay publishes them now. */
  onCommit(): void;
  log: Logger;
  /** How often the streams are looked at (default 3 s). */
  intervalMs?: number;
}

const ROLES: readonly JobRole[] = ['build', 'deploy'];

/** One look: re-dispatches what was lost since the streams last changed. Returns the jobs enqueued again. */
export async function redispatchLostJobs(deps: LostJobDeps, created: Partial<Record<JobRole, number>>) {
  return deps.store.inRecovery(async (tx) => {
    const runs = await tx.activeRuns();
    const jobs = runs.flatMap((r) => (r.state ? dispatchedJobs(r.id, r.state) : []));
    if (jobs.length === 0) return [];
    const subjects = [...new Set(jobs.map((j) => jobSubject(deps.subjects, j)))];
    // A deploy job bound to a host went to `<deploy subject>.<host>`.
    const hostBound = subjects.filter((s) => s.includes('.jobs.deploy.')).map((s) => `${s}.`);
    const published = await tx.publishedJobs(subjects, hostBound);
    // The latest row of each job (rows come in publish order).
    const latest = new Map<string, PublishedJob>();
    for (const row of published) {
      const jobId = jobIdOf(row);
      if (jobId !== undefined) latest.set(jobId, row);
    }
    const lastPublishedAt = new Map([...latest].map(([jobId, row]) => [jobId, row.publishedAt]));
    const lost = lostJobs(jobs, lastPublishedAt, created);
    for (const job of lost) {
      const row = latest.get(job.jobId)!;
      tx.enqueue({ subject: row.subject, payload: row.payload, headers: row.headers ?? {} });
      deps.log.warn(
        { deploymentId: job.deploymentId, serviceId: job.serviceId, jobId: job.jobId, role: job.role },
        'job lost with the bus (published before its stream was created): dispatched again',
      );
    }
    for (const job of jobs) {
      if (!latest.has(job.jobId)) {
        deps.log.warn(
          { ...job },
          'a waiting job has no outbox row left: it cannot be re-dispatched (its deadline fails it)',
        );
      }
    }
    return lost;
  });
}

function jobSubject(subjects: Subjects, job: DispatchedJob): string {
  return job.role === 'build' ? subjects.buildJobs(job.deploymentId) : subjects.deployJobs(job.deploymentId);
}

function jobIdOf(row: PublishedJob): string | undefined {
  try {
    return row.subject.includes('.jobs.build.')
      ? bus.BuildJob.decode(row.payload).jobId
      : bus.DeployJob.decode(row.payload).jobId;
  } catch {
    return undefined;
  }
}

/** Looks at the job streams every `intervalMs`; re-dispatches at start and whenever one was re-created. */
export function startLostJobRecovery(deps: LostJobDeps): { stop(): Promise<void> } {
  const seen: Partial<Record<JobRole, number>> = {};
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  const look = async () => {
    const created: Partial<Record<JobRole, number>> = {};
    let changed = false;
    for (const role of ROLES) {
      const at = await deps.streamCreatedAt(role);
      if (at === undefined) continue;
      created[role] = at;
      if (seen[role] !== at) changed = true;
    }
    if (!changed) return;
    const lost = await redispatchLostJobs(deps, created);
    // Only once done: a failed look is repeated at the next tick.
    Object.assign(seen, created);
    if (lost.length > 0) deps.onCommit();
  };
  const timer = setInterval(() => {
    if (stopped) return;
    running = running
      .then(look)
      .catch((e: unknown) => deps.log.warn({ err: e }, 'looking for jobs lost with the bus failed; will retry'));
  }, deps.intervalMs ?? 3_000);
  return {
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
