import { control, type snapshot } from '@stageline/proto';
import type {
  ActionName,
  EnvironmentFacts,
  KindName,
  Mode,
  RunOptions,
  RunState,
  RunStatusName,
  ServiceRun,
  StageStatusName,
  StepKindName,
  StepOutcomeName,
} from '../domain/model.ts';
import { expectedSteps } from '../domain/plan.ts';
import type { RunRecord } from './run-store.ts';

// Between the pure model's names and the proto enums on the wire.

const ACTIONS: Record<number, ActionName> = {
  [control.Action.ACTION_DEPLOY]: 'DEPLOY',
  [control.Action.ACTION_REDEPLOY]: 'REDEPLOY',
  [control.Action.ACTION_STOP]: 'STOP',
  [control.Action.ACTION_RESTART]: 'RESTART',
  [control.Action.ACTION_DELETE]: 'DELETE',
  [control.Action.ACTION_ROLLBACK]: 'ROLLBACK',
};

export const actionName = (a: control.Action): ActionName | undefined => ACTIONS[a];
export const actionValue = (a: ActionName): control.Action => control.Action[`ACTION_${a}`];
export const serviceStateValue = (s: ServiceRun['status']): control.ServiceState =>
  control.ServiceState[`SERVICE_STATE_${s}`];
export const stageStatusValue = (s: StageStatusName): control.StageStatus => control.StageStatus[`STAGE_STATUS_${s}`];
export const runStatusValue = (s: RunStatusName): control.DeploymentStatus =>
  control.DeploymentStatus[`DEPLOYMENT_STATUS_${s}`];
export const stepKindValue = (k: StepKindName): control.StepKind => control.StepKind[`STEP_KIND_${k}`];
export const stepOutcomeValue = (o: StepOutcomeName | null): control.StepOutcome =>
  o === null ? control.StepOutcome.STEP_OUTCOME_UNSPECIFIED : control.StepOutcome[`STEP_OUTCOME_${o}`];

export function stepKindName(k: control.StepKind): StepKindName | undefined {
  const name = control.stepKindToJSON(k).replace('STEP_KIND_', '');
  return name === 'UNSPECIFIED' || name === 'UNRECOGNIZED' ? undefined : (name as StepKindName);
}
export function stepOutcomeName(o: control.StepOutcome): StepOutcomeName | null {
  const name = control.stepOutcomeToJSON(o).replace('STEP_OUTCOME_', '');
  return name === 'UNSPECIFIED' || name === 'UNRECOGNIZED' ? null : (name as StepOutcomeName);
}
export function serviceStateName(s: control.ServiceState): ServiceRun['status'] | undefined {
  const name = control.serviceStateToJSON(s).replace('SERVICE_STATE_', '');
  return name === 'UNSPECIFIED' || name === 'UNRECOGNIZED' ? undefined : (name as ServiceRun['status']);
}

export function kindName(k: control.ServiceKind): KindName {
  return control.serviceKindToJSON(k).replace('SERVICE_KIND_', '') as KindName;
}

/** How a service's image is obtained. */
export function buildOf(service: control.Service): 'GIT' | 'MIRROR' | null {
  const src = service.source;
  switch (src?.$case) {
    case 'application':
      return 'GIT';
    case 'container':
      return 'MIRROR';
    case 'job':
      return src.value.from?.$case === 'application' ? 'GIT' : 'MIRROR';
    case 'database':
      return src.value.mode === control.DatabaseMode.DATABASE_MODE_MANAGED ? null : 'MIRROR';
    case undefined:
      return null;
  }
}

/** The version a DEPLOY resolves to before any build: a commit or branch, or a tag. */
export function configuredVersion(service: control.Service): string {
  const src = service.source;
  switch (src?.$case) {
    case 'application':
      return src.value.commit !== '' ? `commit:${src.value.commit}` : `branch:${src.value.branch}`;
    case 'container':
      return `tag:${src.value.tag}`;
    case 'job': {
      const from = src.value.from;
      if (from?.$case === 'application') {
        return from.value.commit !== '' ? `commit:${from.value.commit}` : `branch:${from.value.branch}`;
      }
      return from?.$case === 'container' ? `tag:${from.value.tag}` : '';
    }
    case 'database':
      return `tag:${src.value.version}`;
    case undefined:
      return '';
  }
}

export interface CurrentRow {
  serviceId: string;
  hasResources: boolean;
  stopped: boolean;
  version: string;
  image: string;
}

export function factsFrom(
  snap: snapshot.GetEnvironmentSnapshotResponse,
  current: Map<string, CurrentRow>,
): EnvironmentFacts {
  const settings = snap.environment?.settings;
  const mode: Mode =
    settings?.schedulingMode === control.SchedulingMode.SCHEDULING_MODE_STRICT ? 'STRICT' : 'PIPELINED';
  return {
    environmentId: snap.environment?.id ?? '',
    stages: (snap.pipeline?.stages ?? []).map((s) => ({ id: s.id, name: s.name })),
    services: snap.services.map((s) => {
      const row = current.get(s.id);
      return {
        id: s.id,
        name: s.name,
        kind: kindName(s.kind),
        stageId: s.stageId,
        skipped: s.skipped,
        build: buildOf(s),
        configuredVersion: configuredVersion(s),
        current: {
          hasResources: row?.hasResources ?? false,
          stopped: row?.stopped ?? false,
          version: row?.version ?? '',
          image: row?.image ?? '',
        },
      };
    }),
    maxParallelBuilds: settings?.maxParallelBuilds ?? 7,
    maxParallelDeploys: settings?.maxParallelDeploys ?? 7,
    mode,
  };
}

const date = (ms: number | null): Date | undefined => (ms === null ? undefined : new Date(ms));

/** What a run's view needs of it: a stored run, or a plan's run that never was. */
export type RunRowView = Pick<
  RunRecord,
  | 'id'
  | 'environmentId'
  | 'action'
  | 'status'
  | 'requester'
  | 'serviceIds'
  | 'version'
  | 'forceBuild'
  | 'message'
  | 'createdAt'
> &
  Partial<Pick<RunRecord, 'toDeploymentId' | 'options' | 'state' | 'startedAt' | 'finishedAt'>>;

/** Where a queued run stands (domain/queue.ts queueStanding); `merged` only in a request's answer. */
export interface Standing {
  position: number;
  waitsFor: string;
  merged?: boolean;
}

export function deploymentView(
  row: RunRowView,
  standing: Standing = { position: 0, waitsFor: '' },
): control.Deployment {
  const state = row.state;
  return control.Deployment.fromPartial({
    id: row.id,
    environmentId: row.environmentId,
    action: actionValue(row.action as ActionName),
    status: runStatusValue(row.status as RunStatusName),
    queuePosition: standing.position,
    waitsFor: standing.waitsFor,
    merged: standing.merged ?? false,
    versions: row.options?.versions ?? {},
    resumedFrom: row.options?.resumeOf ?? '',
    runLifecycleJobs: row.options?.runLifecycleJobs ?? false,
    requester: row.requester,
    stages: (state?.stages ?? []).map((s) => ({
      stageId: s.stageId,
      name: s.name,
      order: s.order,
      status: stageStatusValue(s.status),
    })),
    services: (state?.services ?? []).map((s) => ({
      serviceId: s.serviceId,
      name: s.name,
      stageId: s.stageId,
      status: serviceStateValue(s.status),
      version: s.version,
      endpoints: s.endpoints,
      message: s.message,
      expectedSteps: expectedSteps(s).map(stepKindValue),
      steps: s.steps.map((st) => ({
        kind: stepKindValue(st.kind),
        startedAt: date(st.startedAt),
        finishedAt: date(st.finishedAt),
        outcome: stepOutcomeValue(st.outcome),
        message: st.message,
      })),
    })),
    createdAt: row.createdAt,
    startedAt: row.startedAt ?? undefined,
    finishedAt: row.finishedAt ?? undefined,
    serviceIds: row.serviceIds,
    version: row.version,
    forceBuild: row.forceBuild,
    toDeploymentId: row.toDeploymentId ?? '',
    message: state?.message || row.message,
  });
}
