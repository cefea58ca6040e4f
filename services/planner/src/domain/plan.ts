import type { EnvironmentFacts, JobSlot, RunRequest, RunState, ServiceFacts, ServiceRun, StageRun } from './model.ts';

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

function workFor(s: ServiceFacts, req: RunRequest, serviceLevel: boolean): Work {
  // Environment-level actions leave skipped services alone — except DELETE, which removes everything.
  if (!serviceLevel && s.skipped && req.action !== 'DELETE') return skipped('skipped');
  const build = s.build === null ? null : slot('build', s.build);
  switch (req.action) {
    case 'DEPLOY': {
      const version = serviceLevel && req.version !== '' ? req.version : s.configuredVersion;
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
