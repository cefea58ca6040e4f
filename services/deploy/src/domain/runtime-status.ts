// A service's running state from the facts about it (pure): its live release and what the runtime says
// of its instances. The watchers (app/runtime-status.ts) gather the facts; this decides.

import type { ReleaseStatus } from './release.ts';

export const RUNTIME_STATES = ['RUNNING', 'WARNING', 'ERROR', 'STOPPED', 'COMPLETED', 'UNKNOWN'] as const;
export type RuntimeState = (typeof RUNTIME_STATES)[number];

/** One instance as the runtime reports it: a pod (kubernetes), the service's pod (local), a job's run. */
export interface InstanceFacts {
  name: string;
  /** running, waiting (+ reason), exited, created, completed, … as the runtime says it. */
  state: string;
  ready: boolean;
  restarts: number;
  startedAt?: Date;
  /** The last time a container of it ended. */
  lastExit?: { code: number; reason: string };
}

/** The last run of a job (a cron tick on local). */
export interface JobRunFacts {
  status: 'RUNNING' | 'SUCCEEDED' | 'FAILED';
  exitCode: number;
  message: string;
}

export interface ServiceFacts {
  /** The release's kind ('' for releases from before kinds were recorded: a workload). */
  kind: string;
  releaseStatus: ReleaseStatus;
  /** undefined: the runtime was not read for it yet (or could not be: `unobservable` says why). */
  instances: readonly InstanceFacts[] | undefined;
  unobservable?: string;
  /** CRON_JOB: its last run, if it ran. */
  lastRun?: JobRunFacts;
  /** When the facts were gathered: an instance that restarted within RECENT_RESTART_MS of it is restarting. */
  now?: Date;
}

/** An instance that (re)started this recently after a restart counts as restarting, not yet settled. */
export const RECENT_RESTART_MS = 60_000;

/** Restarted within RECENT_RESTART_MS of `now` (a crash loop under a restart policy looks "running"). */
export function isRestarting(i: InstanceFacts, now: Date | undefined): boolean {
  return (
    now !== undefined &&
    i.restarts > 0 &&
    i.startedAt !== undefined &&
    now.getTime() - i.startedAt.getTime() < RECENT_RESTART_MS
  );
}

export interface ServiceStatus {
  state: RuntimeState;
  message: string;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** "exited with code 137 (killed (SIGKILL))" from a last exit. */
export function describeExit(exit: { code: number; reason: string }): string {
  return `exited with code ${exit.code}${exit.reason !== '' ? ` (${exit.reason})` : ''}`;
}

/**
 * Why a container ended, from its exit code and what the runtime knows: the runtime's own reason when it
 * gives one (Kubernetes: OOMKilled, Error, Completed), else the signal behind a code over 128.
 */
export function exitReason(code: number, runtimeReason = '', oomKilled = false): string {
  if (oomKilled) return 'OOMKilled';
  if (runtimeReason !== '') return runtimeReason;
  if (code === 0) return 'completed';
  const SIGNALS: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 6: 'SIGABRT', 9: 'SIGKILL', 15: 'SIGTERM' };
  if (code > 128 && code < 160) {
    const name = SIGNALS[code - 128] ?? `signal ${code - 128}`;
    return code - 128 === 9 ? `killed (${name})` : `terminated (${name})`;
  }
  return 'error';
}

/**
 * The decision. STOPPED is the release's (STOP scaled it to zero); a lifecycle job that ran is COMPLETED;
 * a cron job is RUNNING during a run, ERROR after a failed one, COMPLETED otherwise; a managed database
 * (a database on a server Stageline does not run) RUNNING. A workload: RUNNING when every instance is
 * ready and none is restarting, ERROR when none is ready (or there is none), WARNING otherwise (some not
 * ready, or restarting); UNKNOWN until the runtime has been read.
 */
export function serviceStatus(facts: ServiceFacts): ServiceStatus {
  if (facts.releaseStatus === 'STOPPED') {
    const running = (facts.instances ?? []).filter((i) => i.state === 'running').length;
    return {
      state: 'STOPPED',
      message:
        facts.kind === 'CRON_JOB'
          ? 'schedule suspended'
          : running > 0
            ? `stopped, yet ${plural(running, 'instance')} still running`
            : 'stopped (scaled to zero, data kept)',
    };
  }
  if (facts.kind === 'LIFECYCLE_JOB') return { state: 'COMPLETED', message: 'its last run succeeded' };
  if (facts.kind === 'MANAGED_DATABASE') {
    return { state: 'RUNNING', message: 'a database on the configured PostgreSQL server (not watched)' };
  }
  if (facts.kind === 'CRON_JOB') {
    const run = facts.lastRun;
    if (run === undefined) return { state: 'COMPLETED', message: 'scheduled; no run yet' };
    if (run.status === 'RUNNING') return { state: 'RUNNING', message: 'a run is in progress' };
    if (run.status === 'FAILED') {
      return {
        state: 'ERROR',
        message: `its last run failed (exit code ${run.exitCode})${run.message !== '' ? `: ${run.message}` : ''}`,
      };
    }
    return { state: 'COMPLETED', message: 'its last run succeeded' };
  }
  const instances = facts.instances;
  if (instances === undefined) {
    return { state: 'UNKNOWN', message: facts.unobservable ?? 'not observed yet' };
  }
  if (instances.length === 0) return { state: 'ERROR', message: 'no instance is running' };
  const ready = instances.filter((i) => i.ready).length;
  const restarting = instances.filter((i) => isRestarting(i, facts.now)).length;
  const restarts = instances.reduce((n, i) => n + i.restarts, 0);
  const lastExit = instances.find(
    (i) => (!i.ready || isRestarting(i, facts.now)) && i.lastExit !== undefined,
  )?.lastExit;
  const counted =
    `${ready} of ${plural(instances.length, 'instance')} ready` +
    (restarts > 0 ? `, ${plural(restarts, 'restart')}` : '') +
    (restarting > 0 ? ` (${restarting} restarting)` : '');
  const why = lastExit !== undefined ? `; ${describeExit(lastExit)}` : '';
  if (ready === instances.length && restarting === 0) return { state: 'RUNNING', message: counted };
  if (ready > 0) return { state: 'WARNING', message: `${counted}${why}` };
  return { state: 'ERROR', message: `${counted}${why}` };
}
