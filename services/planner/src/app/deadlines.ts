// No run hangs: a job no worker takes, or one taken that never reports its end, fails its service once
// past its deadline. Pure: the run state, the services as the run's snapshot has them, and the time.
import type { control } from '@stageline/proto';
import type { JobRole, RunState, ServiceRun } from '../domain/model.ts';

/**
 * The sequence of a failure the planner decides for a job (dead-lettered, past its deadline): above
 * every sequence a worker's deliveries use (delivery × 1 000 000 + n), so it is never taken for a stale
 * event, and it is the job's last word.
 */
export const PLANNER_FAILURE_SEQUENCE = 0xffff_0000;

export interface DeadlineLimits {
  /** How long a dispatched job may wait for a worker to take it (its first step). */
  queueMs: number;
  /** Added to a taken job's own budget (build timeout, readiness timeout, job duration): rollback, reporting. */
  graceMs: number;
}

export const DEFAULT_DEADLINE_LIMITS: DeadlineLimits = { queueMs: 30 * 60_000, graceMs: 5 * 60_000 };

const DEFAULT_BUILD_TIMEOUT_S = 1800;
const DEFAULT_READINESS_TIMEOUT_S = 300;
const DEFAULT_JOB_DURATION_S = 300;

/** How long the work of one job may take once a worker has it, by the service's own limits. */
export function workBudgetMs(service: control.Service | undefined, role: JobRole): number {
  const source = service?.source;
  if (role === 'build') {
    const app =
      source?.$case === 'application'
        ? source.value
        : source?.$case === 'job' && source.value.from?.$case === 'application'
          ? source.value.from.value
          : undefined;
    return (app?.buildTimeoutSeconds || DEFAULT_BUILD_TIMEOUT_S) * 1000;
  }
  if (source?.$case === 'job') {
    // Each execution within its max duration, plus its retries, as the deploy worker waits for it.
    const { maxDurationSeconds, maxRetries } = source.value;
    return ((maxDurationSeconds || DEFAULT_JOB_DURATION_S) * (maxRetries + 1) + 60) * 1000;
  }
  return (service?.readinessTimeoutSeconds || DEFAULT_READINESS_TIMEOUT_S) * 1000;
}

export interface OverdueJob {
  serviceId: string;
  jobId: string;
  role: JobRole;
  /** Why it failed, for the service's message. */
  reason: string;
}

const QUEUEING = { build: 'BUILD_QUEUEING', deploy: 'DEPLOYMENT_QUEUEING' } as const;

/** When the job of `role` was dispatched (its queueing step opened) and when a worker took it, if one did. */
function times(s: ServiceRun, role: JobRole): { dispatchedAt: number; takenAt: number | undefined } | undefined {
  const queueing = s.steps.findLastIndex((st) => st.kind === QUEUEING[role]);
  const step = s.steps[queueing];
  if (step === undefined) return undefined;
  const taken = step.finishedAt ?? s.steps.slice(queueing + 1).find((st) => st.startedAt >= step.startedAt)?.startedAt;
  return { dispatchedAt: step.startedAt, takenAt: taken ?? undefined };
}

/** The dispatched jobs of a running run that are past their deadline at `now`. */
export function overdueJobs(
  state: RunState,
  serviceOf: (serviceId: string) => control.Service | undefined,
  now: number,
  limits: DeadlineLimits = DEFAULT_DEADLINE_LIMITS,
): OverdueJob[] {
  if (state.status !== 'RUNNING' && state.status !== 'CANCELING') return [];
  const out: OverdueJob[] = [];
  for (const s of state.services) {
    for (const role of ['build', 'deploy'] as const) {
      const job = s[role];
      if (job?.phase !== 'DISPATCHED') continue;
      const at = times(s, role);
      if (at === undefined) continue;
      if (at.takenAt === undefined) {
        if (now - at.dispatchedAt > limits.queueMs) {
          out.push({
            serviceId: s.serviceId,
            jobId: job.jobId,
            role,
            reason: `no ${role} worker took the job within ${Math.round(limits.queueMs / 1000)} s`,
          });
        }
        continue;
      }
      const deadlineMs = workBudgetMs(serviceOf(s.serviceId), role) + limits.graceMs;
      if (now - at.takenAt > deadlineMs) {
        out.push({
          serviceId: s.serviceId,
          jobId: job.jobId,
          role,
          reason: `the ${role} job reported no end within its deadline of ${Math.round(deadlineMs / 1000)} s`,
        });
      }
    }
  }
  return out;
}
