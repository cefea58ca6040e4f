// Words, durations, colours and tables shared by every screen.
import { control } from '@stageline/proto';

export const actionName = (a: control.Action) => control.actionToJSON(a).replace('ACTION_', '');
export const runStatusName = (s: control.DeploymentStatus) =>
  control.deploymentStatusToJSON(s).replace('DEPLOYMENT_STATUS_', '');
export const stateName = (s: control.ServiceState) => control.serviceStateToJSON(s).replace('SERVICE_STATE_', '');
export const stageStatusName = (s: control.StageStatus) => control.stageStatusToJSON(s).replace('STAGE_STATUS_', '');
export const stepName = (k: control.StepKind) => control.stepKindToJSON(k).replace('STEP_KIND_', '');
export const outcomeName = (o: control.StepOutcome) => control.stepOutcomeToJSON(o).replace('STEP_OUTCOME_', '');
export const envStatusName = (s: control.EnvironmentStatus) =>
  control.environmentStatusToJSON(s).replace('ENVIRONMENT_STATUS_', '');
export const kindName = (k: control.ServiceKind) => control.serviceKindToJSON(k).replace('SERVICE_KIND_', '');

const S = control.DeploymentStatus;
export const TERMINAL_RUN: control.DeploymentStatus[] = [
  S.DEPLOYMENT_STATUS_SUCCEEDED,
  S.DEPLOYMENT_STATUS_FAILED,
  S.DEPLOYMENT_STATUS_CANCELED,
];
export const isFinished = (d: control.Deployment) => TERMINAL_RUN.includes(d.status);

const ST = control.ServiceState;
const ERROR_STATES: control.ServiceState[] = [
  ST.SERVICE_STATE_BUILD_ERROR,
  ST.SERVICE_STATE_DEPLOYMENT_ERROR,
  ST.SERVICE_STATE_STOP_ERROR,
  ST.SERVICE_STATE_RESTART_ERROR,
  ST.SERVICE_STATE_DELETE_ERROR,
];
const DONE_STATES: control.ServiceState[] = [
  ST.SERVICE_STATE_DEPLOYED,
  ST.SERVICE_STATE_STOPPED,
  ST.SERVICE_STATE_RESTARTED,
  ST.SERVICE_STATE_DELETED,
];
const IDLE_STATES: control.ServiceState[] = [
  ST.SERVICE_STATE_UNSPECIFIED,
  ST.SERVICE_STATE_QUEUED,
  ST.SERVICE_STATE_STOP_QUEUED,
  ST.SERVICE_STATE_DELETE_QUEUED,
];
export const isErrorState = (s: control.ServiceState) => ERROR_STATES.includes(s);
export const isDoneState = (s: control.ServiceState) => DONE_STATES.includes(s);
/** Finished one way or another: done, failed, canceled or skipped. */
export const isSettled = (s: control.ServiceState) =>
  isDoneState(s) || isErrorState(s) || s === ST.SERVICE_STATE_CANCELED || s === ST.SERVICE_STATE_SKIPPED;
export const isActive = (s: control.ServiceState) => !isSettled(s) && !IDLE_STATES.includes(s);

/** 0.4s, 12.3s, 2m05s, 1h02m. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export const stepMillis = (s: control.Step, now: number) =>
  s.startedAt ? (s.finishedAt ?? new Date(now)).getTime() - s.startedAt.getTime() : 0;

/** How long a service has been (or was) at work in this run: first step start to last step end, or now. */
export function serviceElapsed(s: control.ServiceRun, now: number): number | undefined {
  const starts = s.steps.flatMap((st) => (st.startedAt ? [st.startedAt.getTime()] : []));
  if (starts.length === 0) return undefined;
  const open = s.steps.some((st) => st.startedAt && !st.finishedAt);
  const end = open ? now : Math.max(...s.steps.map((st) => st.finishedAt?.getTime() ?? 0));
  return end - Math.min(...starts);
}

export function runElapsed(d: control.Deployment, now: number): number | undefined {
  const start = d.startedAt ?? d.createdAt;
  if (!start) return undefined;
  return (d.finishedAt?.getTime() ?? now) - start.getTime();
}

export const shortId = (id: string) => (id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id);

// --- colour: only for a terminal, and never when NO_COLOR is set (no-color.org) ---

export type Style = 'red' | 'green' | 'yellow' | 'blue' | 'cyan' | 'dim' | 'bold' | 'plain';
const CODES: Record<Style, [number, number]> = {
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  blue: [34, 39],
  cyan: [36, 39],
  dim: [2, 22],
  bold: [1, 22],
  plain: [0, 0],
};

export type Paint = (style: Style, text: string) => string;
export const paint =
  (enabled: boolean): Paint =>
  (style, text) =>
    !enabled || style === 'plain' || text === '' ? text : `\x1b[${CODES[style][0]}m${text}\x1b[${CODES[style][1]}m`;

export function stateStyle(s: control.ServiceState): Style {
  if (isErrorState(s)) return 'red';
  if (isDoneState(s)) return 'green';
  if (s === ST.SERVICE_STATE_SKIPPED || s === ST.SERVICE_STATE_CANCELED) return 'dim';
  if (isActive(s)) return 'cyan';
  return 'plain';
}

export function runStyle(s: control.DeploymentStatus): Style {
  switch (s) {
    case S.DEPLOYMENT_STATUS_SUCCEEDED:
      return 'green';
    case S.DEPLOYMENT_STATUS_FAILED:
      return 'red';
    case S.DEPLOYMENT_STATUS_CANCELED:
    case S.DEPLOYMENT_STATUS_CANCELING:
      return 'yellow';
    case S.DEPLOYMENT_STATUS_RUNNING:
      return 'cyan';
    default:
      return 'plain';
  }
}

export function stageStyle(s: control.StageStatus): Style {
  switch (s) {
    case control.StageStatus.STAGE_STATUS_DONE:
      return 'green';
    case control.StageStatus.STAGE_STATUS_ERROR:
      return 'red';
    case control.StageStatus.STAGE_STATUS_ONGOING:
      return 'cyan';
    case control.StageStatus.STAGE_STATUS_SKIPPED:
    case control.StageStatus.STAGE_STATUS_CANCELED:
      return 'dim';
    default:
      return 'plain';
  }
}

/** Visible width of a string that may hold colour codes. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching escape sequences is the point
export const visibleLength = (s: string) => [...s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')].length;

/** Columns padded to the widest cell; cells may be coloured. The last column is not padded. */
export function table(rows: string[][], gap = 2): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, visibleLength(cell));
    });
  }
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - visibleLength(cell) + gap)))
      .join('')
      .trimEnd(),
  );
}

export function localTime(d: Date | undefined): string {
  if (!d) return '-';
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
