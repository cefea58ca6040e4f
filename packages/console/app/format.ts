// How the console names the protos' enums and times.
import { runtimeStateToJSON, type ServiceRuntime } from '@stageline/proto/deploy';
import { control } from './api.ts';

/** `SERVICE_STATE_DEPLOYED` → `DEPLOYED`. */
const strip = (name: string, prefix: string) => name.replace(prefix, '').replaceAll('_', ' ');
export const stateName = (s: control.ServiceState) => strip(control.serviceStateToJSON(s), 'SERVICE_STATE_');
export const kindName = (k: control.ServiceKind) => strip(control.serviceKindToJSON(k), 'SERVICE_KIND_');
export const runStatusName = (s: control.DeploymentStatus) =>
  strip(control.deploymentStatusToJSON(s), 'DEPLOYMENT_STATUS_');
export const envStatusName = (s: control.EnvironmentStatus) =>
  strip(control.environmentStatusToJSON(s), 'ENVIRONMENT_STATUS_');
export const stageStatusName = (s: control.StageStatus) => strip(control.stageStatusToJSON(s), 'STAGE_STATUS_');
export const stepName = (k: control.StepKind) => strip(control.stepKindToJSON(k), 'STEP_KIND_');
export const outcomeName = (o: control.StepOutcome) => strip(control.stepOutcomeToJSON(o), 'STEP_OUTCOME_');
export const actionName = (a: control.Action) => strip(control.actionToJSON(a), 'ACTION_');

/** A tone for a state's badge: ok, busy, error, idle. */
export function tone(name: string): 'ok' | 'busy' | 'error' | 'idle' {
  if (/ERROR|FAILED|CANCELED/.test(name)) return 'error';
  if (/NEVER|SKIPPED/.test(name)) return 'idle';
  if (/DEPLOYED|SUCCEEDED|DONE|RESTARTED|CACHE HIT|SUCCESS/.test(name)) return 'ok';
  if (/ING|QUEUED|RUNNING|PENDING/.test(name)) return 'busy';
  return 'idle';
}

export function duration(from: Date | undefined, to: Date | undefined, now = new Date()): string {
  if (from === undefined) return '';
  const ms = (to ?? now).getTime() - from.getTime();
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
}

export const when = (d: Date | undefined) => (d === undefined ? '' : d.toLocaleString());

export const TERMINAL_RUN: readonly control.DeploymentStatus[] = [
  control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED,
  control.DeploymentStatus.DEPLOYMENT_STATUS_FAILED,
  control.DeploymentStatus.DEPLOYMENT_STATUS_CANCELED,
];

/** What runs now (GetRuntimeStatus): `RUNTIME_STATE_RUNNING` → `RUNNING`. */
export const runtimeName = (r: ServiceRuntime) => strip(runtimeStateToJSON(r.state), 'RUNTIME_STATE_');

/** A running state's badge: RUNNING and COMPLETED ok, WARNING busy, ERROR error, the rest idle. */
export function runtimeTone(name: string): 'ok' | 'busy' | 'error' | 'idle' {
  if (name === 'RUNNING' || name === 'COMPLETED') return 'ok';
  if (name === 'WARNING') return 'busy';
  if (name === 'ERROR') return 'error';
  return 'idle';
}

/** "1/1 ready, 2 restarts" for a card. */
export function instancesText(r: ServiceRuntime): string {
  if (r.instances.length === 0 || r.kind === 'LIFECYCLE_JOB' || r.kind === 'CRON_JOB') return '';
  const ready = r.instances.filter((i) => i.ready).length;
  const restarts = r.instances.reduce((n, i) => n + i.restarts, 0);
  return `${ready}/${r.instances.length} ready${restarts > 0 ? `, ${restarts} restart${restarts === 1 ? '' : 's'}` : ''}`;
}
