import type {
  EnvironmentFacts,
  ExpectedMs,
  JobSlot,
  RunRequest,
  RunState,
  ServiceFacts,
  ServiceRun,
  StageRun,
  StepKindName,
} from './model.ts';

// A request and the environment's facts become a run: which services take part, what each must do
// (build or mirror, then deploy / stop / restart / delete), and which are skipped and why.
// Nothing is dispatched here; `advance` (schedule.ts) does that.

function slot(role: JobSlot['role'], what: JobSlot['what']): JobSlot {
  return { role, what, phase: 'PENDING', jobId: '', attempt: 0, lastSequence: 0 };
}

type Work = Pick<ServiceRun, 'status' | 'build' | 'deploy' | 'version' | 'image' | 'message'> & { skip?: string };

function skipped(reason: string): Work {
  return { status: 'SKIPPED', build: null, deploy: null, version: '', image: '', message: reason, skip: reason };
}

const runsOn = (s: ServiceFacts) => s.runsOn ?? { deploy: true, stop: false, delete: false };

/**
 * A lifecycle job runs (a DEPLOY job, EXECUTING) on the events it is configured for and is skipped
 * otherwise. On STOP or DELETE it runs at its stage's turn with the image it last ran, or the one its
 * configured version builds if it never ran. RESTART never runs it. `undefined`: DEPLOY-like actions,
 * handled as for any service once the job is configured for DEPLOY.
 */
function lifecycleWork(s: ServiceFacts, req: RunRequest): Work | undefined {
  const on = runsOn(s);
  switch (req.action) {
    case 'DEPLOY':
    case 'REDEPLOY':
      return on.deploy ? undefined : skipped('runs on STOP or DELETE only, not on DEPLOY');
    case 'ROLLBACK':
      if (!on.deploy) return skipped('runs on STOP or DELETE only, not on DEPLOY');
      // Run again against the data of a later version, a migration job does harm: only when asked.
      return req.runLifecycleJobs
        ? undefined
        : skipped('a rollback does not run lifecycle jobs again (run_lifecycle_jobs)');
    case 'RESTART':
      return skipped('a lifecycle job runs on DEPLOY, STOP or DELETE, never on RESTART');
    case 'STOP':
    case 'DELETE': {
      const trigger = req.action;
      if (!(trigger === 'STOP' ? on.stop : on.delete)) {
        if (trigger === 'STOP') return skipped('not configured to run on STOP');
        // DELETE removes every service: what an earlier run of the job left goes too.
        if (!s.current.hasResources) return skipped('not configured to run on DELETE; nothing to remove');
        return {
          status: 'DELETE_QUEUED',
          build: null,
          deploy: slot('deploy', 'DELETE'),
          version: s.current.version,
          image: s.current.image,
          message: '',
        };
      }
      if (trigger === 'STOP' && s.current.stopped) return skipped('already ran for this STOP');
      const known = s.current.image !== '';
      return {
        status: 'QUEUED',
        build: known || s.build === null ? null : slot('build', s.build),
        deploy: { ...slot('deploy', 'DEPLOY'), trigger },
        version: known ? s.current.version : s.configuredVersion,
        image: known ? s.current.image : '',
        message: '',
      };
    }
  }
}

function workFor(s: ServiceFacts, req: RunRequest, serviceLevel: boolean): Work {
  // Environment-level actions leave skipped services alone — except DELETE, which removes everything.
  if (!serviceLevel && s.skipped && req.action !== 'DELETE') return skipped('skipped');
  if (s.kind === 'LIFECYCLE_JOB') {
    const work = lifecycleWork(s, req);
    if (work !== undefined) return work;
  }
  const build = s.build === null ? null : slot('build', s.build);
  switch (req.action) {
    case 'DEPLOY': {
      const version = req.versions?.[s.id] ?? (serviceLevel && req.version !== '' ? req.version : s.configuredVersion);
      // A past revision is redeployed as the deploy service recorded it: nothing to build.
      const fromRevision = version.startsWith('revision:');
      return {
        status: 'QUEUED',
        build: fromRevision ? null : build,
        deploy: slot('deploy', 'DEPLOY'),
        version,
        image: '',
        message: '',
      };
    }
    case 'REDEPLOY': {
      // The version it runs now, with its current configuration; the build is skipped by the cache
      // unless its inputs changed. Never deployed: its configured version.
      const version = s.current.version !== '' ? s.current.version : s.configuredVersion;
      return { status: 'QUEUED', build, deploy: slot('deploy', 'DEPLOY'), version, image: '', message: '' };
    }
    case 'ROLLBACK': {
      const target = req.rollbackTo?.[s.id];
      if (!target) return skipped('not part of the run rolled back to');
      // No build: the image comes from the mirror as the target run left it.
      return {
        status: 'QUEUED',
        build: null,
        deploy: slot('deploy', 'DEPLOY'),
        version: target.version,
        image: target.image,
        message: '',
      };
    }
    case 'STOP':
      if (!s.current.hasResources) return skipped('never deployed');
      if (s.current.stopped) return skipped('already stopped');
      return {
        status: 'STOP_QUEUED',
        build: null,
        deploy: slot('deploy', 'STOP'),
        version: s.current.version,
        image: s.current.image,
        message: '',
      };
    case 'RESTART':
      if (!s.current.hasResources) return skipped('never deployed');
      return {
        status: 'QUEUED',
        build: null,
        deploy: slot('deploy', 'RESTART'),
        version: s.current.version,
        image: s.current.image,
        message: '',
      };
    case 'DELETE':
      if (!s.current.hasResources) return skipped('never deployed');
      return {
        status: 'DELETE_QUEUED',
        build: null,
        deploy: slot('deploy', 'DELETE'),
        version: s.current.version,
        image: s.current.image,
        message: '',
      };
  }
}

export function planRun(id: string, env: EnvironmentFacts, req: RunRequest): RunState {
  const serviceLevel = req.serviceIds.length > 0;
  const targets = serviceLevel ? env.services.filter((s) => req.serviceIds.includes(s.id)) : env.services;
  const services: ServiceRun[] = targets.map((s) => {
    const work = workFor(s, req, serviceLevel);
    return {
      serviceId: s.id,
      name: s.name,
      kind: s.kind,
      stageId: s.stageId,
      status: work.status,
      version: work.version,
      image: work.image,
      build: work.build,
      deploy: work.deploy,
      steps: [],
      finished: work.skip !== undefined,
      failed: false,
      message: work.message,
      endpoints: [],
      outputs: {},
      ...(s.expectedMs !== undefined ? { expectedMs: s.expectedMs } : {}),
    };
  });
  const inRun = new Set(services.map((s) => s.stageId));
  const stages: StageRun[] = env.stages.flatMap((stage, order) => {
    // A service-level run lists only the stages of its services.
    if (serviceLevel && !inRun.has(stage.id)) return [];
    const members = services.filter((s) => s.stageId === stage.id);
    const status = members.every((s) => s.status === 'SKIPPED') ? 'SKIPPED' : 'QUEUED';
    return [{ stageId: stage.id, name: stage.name, order, status }];
  });
  const pipelineOrder = stages.map((s) => s.stageId);
  const reverse = req.action === 'STOP' || req.action === 'DELETE';
  return {
    id,
    action: req.action,
    status: 'RUNNING',
    executionOrder: reverse ? pipelineOrder.toReversed() : pipelineOrder,
    stages,
    services,
    maxBuilds: env.maxParallelBuilds,
    maxDeploys: env.maxParallelDeploys,
    mode: env.mode,
    forceBuild: req.forceBuild,
    cancelRequested: false,
    message: '',
    startedAt: null,
    finishedAt: null,
  };
}

const BUILD_STEPS: ReadonlySet<string> = new Set(['GIT_CLONE', 'BUILD', 'MIRROR_IMAGE']);
const DEPLOY_STEPS: ReadonlySet<string> = new Set(['DEPLOYMENT', 'EXECUTING']);

/**
 * How long each service's build and deploy took, from earlier runs (newest first): the most recent
 * run in which that work finished, its steps' time without the queueing before them.
 */
export function expectedDurations(runs: readonly Pick<RunState, 'services'>[]): Map<string, ExpectedMs> {
  const out = new Map<string, ExpectedMs>();
  for (const run of runs) {
    for (const s of run.services) {
      const known = out.get(s.serviceId) ?? {};
      const spent = (kinds: ReadonlySet<string>): number | undefined => {
        const done = s.steps.filter((st) => kinds.has(st.kind) && st.finishedAt !== null);
        return done.length === 0 ? undefined : done.reduce((ms, st) => ms + ((st.finishedAt ?? 0) - st.startedAt), 0);
      };
      const build = known.build ?? spent(BUILD_STEPS);
      const deploy = known.deploy ?? spent(DEPLOY_STEPS);
      if (build !== undefined || deploy !== undefined) {
        out.set(s.serviceId, {
          ...(build !== undefined ? { build } : {}),
          ...(deploy !== undefined ? { deploy } : {}),
        });
      }
    }
  }
  return out;
}

/** The steps a service's run expects, in order, from its jobs: what it mirrors or builds, then deploys. */
export function expectedSteps(s: Pick<ServiceRun, 'kind' | 'build' | 'deploy'>): StepKindName[] {
  const steps: StepKindName[] = [];
  if (s.build?.what === 'GIT') steps.push('GIT_CLONE', 'BUILD');
  if (s.build?.what === 'MIRROR') steps.push('MIRROR_IMAGE');
  switch (s.deploy?.what) {
    case 'DEPLOY':
      steps.push(s.kind === 'LIFECYCLE_JOB' ? 'EXECUTING' : 'DEPLOYMENT');
      break;
    case 'STOP':
    case 'RESTART':
    case 'DELETE':
      steps.push(s.deploy.what);
      break;
  }
  return steps;
}
