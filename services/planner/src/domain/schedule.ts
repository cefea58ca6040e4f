import type {
  Decision,
  JobSlot,
  RunState,
  ServiceRun,
  ServiceStateName,
  StageRun,
  StageStatusName,
  Step,
  StepKindName,
  StepOutcomeName,
} from './model.ts';
import { isTerminalRun } from './model.ts';

// The scheduling core: pure functions from a run and a fact to the next run and what to do.
// `advance` is safe to call any number of times on the same state: it only dispatches what is
// PENDING and allowed now, and finishes the run once nothing is in flight and nothing can start.

const inFlight = (job: JobSlot | null): boolean => job?.phase === 'DISPATCHED';

export function countInFlight(state: RunState): { builds: number; deploys: number } {
  let builds = 0;
  let deploys = 0;
  for (const s of state.services) {
    if (inFlight(s.build)) builds++;
    if (inFlight(s.deploy)) deploys++;
  }
  return { builds, deploys };
}

function openStep(s: ServiceRun, kind: StepKindName, now: number, message = ''): ServiceRun {
  return { ...s, steps: [...s.steps, { kind, startedAt: now, finishedAt: null, outcome: null, message }] };
}

/** Closes the open step of that kind (the last one), if any. */
function closeStep(
  s: ServiceRun,
  kind: StepKindName,
  now: number,
  outcome: StepOutcomeName,
  message?: string,
): ServiceRun {
  const index = s.steps.findLastIndex((st) => st.kind === kind && st.finishedAt === null);
  if (index < 0) return s;
  const steps = [...s.steps];
  const step = steps[index]!;
  steps[index] = { ...step, finishedAt: Math.max(now, step.startedAt), outcome, message: message ?? step.message };
  return { ...s, steps };
}

function closeOpenSteps(s: ServiceRun, now: number, outcome: StepOutcomeName): ServiceRun {
  return {
    ...s,
    steps: s.steps.map((st) =>
      st.finishedAt === null ? { ...st, finishedAt: Math.max(now, st.startedAt), outcome } : st,
    ),
  };
}

function activeStatus(s: ServiceRun, job: JobSlot): ServiceStateName {
  if (job.role === 'build') return job.what === 'GIT' ? 'BUILDING' : 'MIRRORING';
  switch (job.what) {
    case 'STOP':
      return 'STOPPING';
    case 'RESTART':
      return 'RESTARTING';
    case 'DELETE':
      return 'DELETING';
    default:
      return s.kind === 'LIFECYCLE_JOB' ? 'EXECUTING' : 'DEPLOYING';
  }
}

function dispatch(
  state: RunState,
  s: ServiceRun,
  job: JobSlot,
  now: number,
): { service: ServiceRun; decision: Decision } {
  const attempt = job.attempt + 1;
  const jobId = `${state.id}:${s.serviceId}:${job.role}:${attempt}`;
  const slot: JobSlot = { ...job, phase: 'DISPATCHED', jobId, attempt, lastSequence: 0 };
  let service: ServiceRun = { ...s, status: activeStatus(s, job) };
  service = job.role === 'build' ? { ...service, build: slot } : { ...service, deploy: slot };
  // Waiting for a worker is a step of its own, so queueing time is visible next to work time.
  service = openStep(service, job.role === 'build' ? 'BUILD_QUEUEING' : 'DEPLOYMENT_QUEUEING', now);
  return {
    service,
    decision: { type: 'dispatch', role: job.role, serviceId: s.serviceId, jobId, attempt, what: job.what },
  };
}

function stageMembers(state: RunState, stageId: string): ServiceRun[] {
  return state.services.filter((s) => s.stageId === stageId);
}

const stageComplete = (members: ServiceRun[]) => members.every((s) => s.finished && !s.failed);

function liveStageStatus(stage: StageRun, members: ServiceRun[]): StageStatusName {
  if (stage.status === 'SKIPPED') return 'SKIPPED';
  if (stageComplete(members)) return 'DONE';
  const started = members.some((s) => s.steps.length > 0 || (s.finished && s.status !== 'SKIPPED'));
  return started ? 'ONGOING' : 'QUEUED';
}

function withStages(state: RunState): RunState {
  return {
    ...state,
    stages: state.stages.map((stage) => ({
      ...stage,
      status: liveStageStatus(stage, stageMembers(state, stage.stageId)),
    })),
  };
}

function finalize(state: RunState, now: number): RunState {
  const failed = state.services.some((s) => s.failed);
  const canceled = state.cancelRequested;
  const services = state.services.map((s) =>
    s.finished ? s : { ...closeOpenSteps(s, now, 'CANCELED'), status: 'CANCELED' as const, finished: true },
  );
  const stages = state.stages.map((stage): StageRun => {
    if (stage.status === 'SKIPPED') return stage;
    const members = services.filter((s) => s.stageId === stage.stageId);
    if (members.some((s) => s.failed)) return { ...stage, status: 'ERROR' };
    // A stage is DONE only when all of its services did their work in this run.
    if (members.every((s) => s.status !== 'CANCELED' && !s.failed)) return { ...stage, status: 'DONE' };
    return { ...stage, status: 'CANCELED' };
  });
  const status = failed ? 'FAILED' : canceled ? 'CANCELED' : 'SUCCEEDED';
  return { ...state, services, stages, status, finishedAt: now };
}

/**
 * Starts what may start now within the limits, and finishes the run when nothing is left to do.
 * PIPELINED: builds (and mirrors) of any stage run within the build limit, earliest stage first;
 * STRICT: every build first. Either way a stage's deploys start only when every earlier stage (in
 * execution order) is DONE or SKIPPED, and a service deploys only after its own build.
 */
/** Sort order of two expected durations: longer first, unknown after every known one. */
function longestFirst(a: number | undefined, b: number | undefined): number {
  return (b ?? -1) - (a ?? -1);
}

export function advance(input: RunState, now: number): { state: RunState; decisions: Decision[] } {
  if (isTerminalRun(input.status) || input.status === 'PLANNED' || input.status === 'QUEUED') {
    return { state: input, decisions: [] };
  }
  let state: RunState = input.startedAt === null ? { ...input, startedAt: now } : input;
  const decisions: Decision[] = [];
  const stopping = state.cancelRequested || state.services.some((s) => s.failed);

  if (!stopping) {
    // Stage by stage; within a stage the longest jobs first (known from earlier runs; unknown last,
    // then pipeline order): whole jobs divide over the slots with the least time left at the end.
    const rank = new Map(state.executionOrder.map((id, i) => [id, i]));
    const ordered = state.services
      .map((s, index) => ({ s, index }))
      .sort(
        (a, b) =>
          (rank.get(a.s.stageId) ?? 0) - (rank.get(b.s.stageId) ?? 0) ||
          longestFirst(a.s.expectedMs?.build, b.s.expectedMs?.build) ||
          a.index - b.index,
      );
    const services = [...state.services];
    let { builds, deploys } = countInFlight(state);

    for (const { index } of ordered) {
      if (builds >= state.maxBuilds) break;
      const s = services[index]!;
      if (s.build?.phase !== 'PENDING') continue;
      const { service, decision } = dispatch(state, s, s.build, now);
      services[index] = service;
      decisions.push(decision);
      builds++;
    }

    const buildsDone = services.every((s) => s.build === null || s.build.phase === 'DONE');
    if (state.mode === 'PIPELINED' || buildsDone) {
      for (const stageId of state.executionOrder) {
        const members = services
          .map((s, index) => ({ s, index }))
          .filter(({ s }) => s.stageId === stageId)
          .sort((a, b) => longestFirst(a.s.expectedMs?.deploy, b.s.expectedMs?.deploy) || a.index - b.index);
        if (stageComplete(members.map((m) => m.s))) continue;
        for (const { s, index } of members) {
          if (deploys >= state.maxDeploys) break;
          if (s.deploy?.phase !== 'PENDING') continue;
          if (s.build !== null && s.build.phase !== 'DONE') continue;
          const { service, decision } = dispatch(state, s, s.deploy, now);
          services[index] = service;
          decisions.push(decision);
          deploys++;
        }
        // Later stages wait for this one.
        break;
      }
    }
    state = { ...state, services };
  }

  state = withStages(state);
  const { builds, deploys } = countInFlight(state);
  const idle = builds === 0 && deploys === 0;
  const allDone = state.services.every((s) => s.finished);
  if (idle && (stopping || allDone)) {
    state = finalize(state, now);
    decisions.push({ type: 'finished', status: state.status });
  }
  return { state, decisions };
}

/** A fact reported by a worker about one job (JobEvent). */
export type JobFact =
  | { type: 'stepStarted'; jobId: string; sequence: number; kind: StepKindName; at: number; message: string }
  | { type: 'stepFinished'; jobId: string; sequence: number; step: Step }
  | {
      type: 'jobFinished';
      jobId: string;
      sequence: number;
      succeeded: boolean;
      state: ServiceStateName;
      message: string;
      image: string;
      endpoints: { port: number; url: string }[];
      at: number;
      /** GIT builds: the exact version built (`commit:<sha>`, a branch resolved to its head). */
      resolvedVersion?: string;
      /** Values for later stages (job outputs, database connection details). */
      outputs?: Record<string, string>;
    };

const SUCCESS_STATE: Record<JobSlot['what'], ServiceStateName> = {
  GIT: 'BUILDING',
  MIRROR: 'MIRRORING',
  DEPLOY: 'DEPLOYED',
  STOP: 'STOPPED',
  RESTART: 'RESTARTED',
  DELETE: 'DELETED',
};
const ERROR_STATE: Record<JobSlot['what'], ServiceStateName> = {
  GIT: 'BUILD_ERROR',
  MIRROR: 'BUILD_ERROR',
  DEPLOY: 'DEPLOYMENT_ERROR',
  STOP: 'STOP_ERROR',
  RESTART: 'RESTART_ERROR',
  DELETE: 'DELETE_ERROR',
};

/**
 * Applies a worker's report. Reports for jobs this run no longer waits for (an older attempt, a job
 * already finished, a repeated or out-of-order event) change nothing, so redeliveries are harmless.
 */
export function applyJobFact(state: RunState, fact: JobFact): RunState {
  if (isTerminalRun(state.status)) return state;
  const index = state.services.findIndex((s) => s.build?.jobId === fact.jobId || s.deploy?.jobId === fact.jobId);
  if (index < 0) return state;
  let s = state.services[index]!;
  const role = s.build?.jobId === fact.jobId ? 'build' : 'deploy';
  const job = (role === 'build' ? s.build : s.deploy)!;
  if (job.phase !== 'DISPATCHED' || fact.sequence <= job.lastSequence) return state;
  const advanced: JobSlot = { ...job, lastSequence: fact.sequence };

  switch (fact.type) {
    case 'stepStarted':
      // The worker took the job: queueing is over.
      s = closeStep(s, role === 'build' ? 'BUILD_QUEUEING' : 'DEPLOYMENT_QUEUEING', fact.at, 'SUCCESS');
      s = openStep(s, fact.kind, fact.at, fact.message);
      break;
    case 'stepFinished': {
      s = closeStep(s, role === 'build' ? 'BUILD_QUEUEING' : 'DEPLOYMENT_QUEUEING', fact.step.startedAt, 'SUCCESS');
      const open = s.steps.findLastIndex((st) => st.kind === fact.step.kind && st.finishedAt === null);
      const steps = [...s.steps];
      if (open >= 0) steps[open] = fact.step;
      else steps.push(fact.step);
      s = { ...s, steps };
      break;
    }
    case 'jobFinished': {
      s = closeOpenSteps(s, fact.at, fact.succeeded ? 'SUCCESS' : fact.state === 'CANCELED' ? 'CANCELED' : 'ERROR');
      const done: JobSlot = {
        ...advanced,
        phase: fact.succeeded ? 'DONE' : fact.state === 'CANCELED' ? 'CANCELED' : 'FAILED',
      };
      if (fact.succeeded) {
        if (role === 'build') {
          // A branch resolved to a commit is recorded, so the deploy and a later REDEPLOY use that commit.
          const version = fact.resolvedVersion ? fact.resolvedVersion : s.version;
          s = { ...s, build: done, image: fact.image !== '' ? fact.image : s.image, version, status: 'QUEUED' };
        } else {
          const status = fact.state !== 'QUEUED' && fact.state !== 'CANCELED' ? fact.state : SUCCESS_STATE[job.what];
          s = {
            ...s,
            deploy: done,
            status,
            finished: true,
            endpoints: fact.endpoints,
            outputs: fact.outputs ?? {},
            message: fact.message,
          };
        }
      } else if (fact.state === 'CANCELED') {
        s = {
          ...(role === 'build' ? { ...s, build: done } : { ...s, deploy: done }),
          status: 'CANCELED',
          finished: true,
          message: fact.message,
        };
      } else {
        const status = fact.state === 'QUEUED' ? ERROR_STATE[job.what] : fact.state;
        s = {
          ...(role === 'build' ? { ...s, build: done } : { ...s, deploy: done }),
          status,
          finished: true,
          failed: true,
          message: fact.message,
        };
      }
      const services = [...state.services];
      services[index] = s;
      const next = { ...state, services };
      if (!fact.succeeded && fact.state !== 'CANCELED' && next.message === '') {
        return { ...next, message: `${s.name}: ${fact.message}` };
      }
      return next;
    }
  }
  const services = [...state.services];
  services[index] = role === 'build' ? { ...s, build: advanced } : { ...s, deploy: advanced };
  return { ...state, services };
}

/**
 * CANCEL of a running run: nothing new starts, jobs in flight are told to stop (builds killed,
 * deploys rolled back by the workers), and the run ends CANCELED once they have reported.
 */
export function requestCancel(state: RunState): { state: RunState; decisions: Decision[] } {
  if (isTerminalRun(state.status) || state.cancelRequested) return { state, decisions: [] };
  const services = state.services.map((s) =>
    inFlight(s.build) || inFlight(s.deploy) ? { ...s, status: 'CANCELING' as const } : s,
  );
  const anyInFlight = services.some((s) => s.status === 'CANCELING');
  return {
    state: { ...state, services, cancelRequested: true, status: 'CANCELING' },
    decisions: anyInFlight ? [{ type: 'cancelJobs' }] : [],
  };
}

/**
 * The environment variables a service's deploy receives from earlier stages of the run (in execution
 * order): what their deploys produced in this run, else what they produced last time (`persisted`).
 */
export function injectedEnv(
  state: RunState,
  serviceId: string,
  persisted: ReadonlyMap<string, Record<string, string>>,
): Record<string, string> {
  const target = state.services.find((s) => s.serviceId === serviceId);
  if (!target) return {};
  const rank = new Map(state.executionOrder.map((id, i) => [id, i]));
  const mine = rank.get(target.stageId) ?? 0;
  const env: Record<string, string> = {};
  const earlier = [...persisted.keys()].filter((id) => id !== serviceId);
  // Persisted values first; this run's values override them.
  for (const id of earlier) {
    const inRun = state.services.find((s) => s.serviceId === id);
    if (inRun && (rank.get(inRun.stageId) ?? 0) >= mine) continue;
    Object.assign(env, persisted.get(id));
  }
  for (const s of state.services) {
    if (s.serviceId === serviceId || (rank.get(s.stageId) ?? 0) >= mine) continue;
    Object.assign(env, s.outputs);
  }
  return env;
}
