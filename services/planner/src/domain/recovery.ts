// A NATS store lost (or a job stream deleted) takes the job messages in it along: the runs that
// dispatched them would wait for their deadline. PostgreSQL is the record: a job the run still waits for
// whose last publication is older than its stream was lost with the old stream, and is dispatched again
// (the same job: the same job id, so a worker that already did it answers its recorded outcome).
import type { JobRole, RunState } from './model.ts';

export interface DispatchedJob {
  deploymentId: string;
  serviceId: string;
  role: JobRole;
  jobId: string;
}

/** The jobs a running run still waits for (dispatched, no end reported yet). */
export function dispatchedJobs(deploymentId: string, state: RunState): DispatchedJob[] {
  if (state.status !== 'RUNNING' && state.status !== 'CANCELING') return [];
  const out: DispatchedJob[] = [];
  for (const s of state.services) {
    for (const slot of [s.build, s.deploy]) {
      if (slot?.phase === 'DISPATCHED') {
        out.push({ deploymentId, serviceId: s.serviceId, role: slot.role, jobId: slot.jobId });
      }
    }
  }
  return out;
}

/**
 * The jobs to dispatch again: those whose latest publication (ms; null while the outbox has not sent it,
 * absent when no outbox row is left) came before their stream's creation (ms; absent while the stream is
 * missing: nothing can be published anyway, wait for provisioning).
 */
export function lostJobs(
  jobs: readonly DispatchedJob[],
  lastPublishedAt: ReadonlyMap<string, number | null>,
  streamCreatedAt: Partial<Record<JobRole, number>>,
): DispatchedJob[] {
  return jobs.filter((job) => {
    const created = streamCreatedAt[job.role];
    const published = lastPublishedAt.get(job.jobId);
    return created !== undefined && published !== undefined && published !== null && published < created;
  });
}
