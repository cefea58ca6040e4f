// How a run looks: the live frame redrawn on a terminal, the timestamped lines written elsewhere
// (CI logs, pipes), and the summary both end with. Pure functions of the run and the clock.
import { control } from '@stageline/proto';
import {
  actionName,
  duration,
  isActive,
  isDoneState,
  isErrorState,
  isFinished,
  isSettled,
  outcomeName,
  type Paint,
  runElapsed,
  runStatusName,
  runStyle,
  type Style,
  serviceElapsed,
  stageStatusName,
  stageStyle,
  stateName,
  stateStyle,
  stepMillis,
  stepName,
  table,
} from './format.ts';

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const QUEUEING: control.StepKind[] = [
  control.StepKind.STEP_KIND_BUILD_QUEUEING,
  control.StepKind.STEP_KIND_DEPLOYMENT_QUEUEING,
];

export interface RunContext {
  /** e.g. "deploy demo/staging". */
  title: string;
  /** The dry run of the same request (PlanDeployment): the steps each service should go through,
   *  and the stages and services to show while the run waits in the queue, not yet planned. */
  plan: control.Deployment | undefined;
  /** The failing step's last log lines, by service id. */
  failureLogs: Map<string, string[]>;
}

type Segment = [Style, string];

/** Cuts segments to a visible width, then paints them. */
function line(segments: Segment[], width: number, paint: Paint): string {
  let room = width;
  let out = '';
  for (const [style, text] of segments) {
    if (room <= 0) break;
    const chars = [...text];
    const cut = chars.length > room ? `${chars.slice(0, Math.max(0, room - 1)).join('')}…` : text;
    room -= Math.min(chars.length, room);
    out += paint(style, cut);
  }
  return out;
}

const pad = (text: string, width: number) => text + ' '.repeat(Math.max(0, width - [...text].length));

function currentStep(s: control.ServiceRun): control.Step | undefined {
  return s.steps.findLast((st) => st.startedAt && !st.finishedAt) ?? undefined;
}

function failedStep(s: control.ServiceRun): control.Step | undefined {
  return s.steps.findLast((st) => st.outcome === control.StepOutcome.STEP_OUTCOME_ERROR);
}

/** Steps done out of steps expected, queueing waits left out. */
export function progressOf(
  s: control.ServiceRun,
  expected: control.StepKind[] | undefined,
): { done: number; total: number } {
  const real = s.steps.filter((st) => !QUEUEING.includes(st.kind));
  const kinds = [...(expected ?? []).filter((k) => !QUEUEING.includes(k))];
  for (const st of real) if (!kinds.includes(st.kind)) kinds.push(st.kind);
  const done = kinds.filter((k) => real.some((st) => st.kind === k && st.finishedAt)).length;
  if (isDoneState(s.status)) return { done: kinds.length, total: kinds.length };
  return { done, total: kinds.length };
}

function icon(s: control.ServiceState, tick: number): Segment {
  if (isErrorState(s)) return ['red', '✗'];
  if (isDoneState(s)) return ['green', '✓'];
  if (s === control.ServiceState.SERVICE_STATE_SKIPPED) return ['dim', '-'];
  if (s === control.ServiceState.SERVICE_STATE_CANCELED) return ['yellow', '⊘'];
  if (isActive(s)) return ['cyan', SPINNER[tick % SPINNER.length]!];
  return ['dim', '·'];
}

function stageIcon(s: control.StageStatus, tick: number): Segment {
  switch (s) {
    case control.StageStatus.STAGE_STATUS_DONE:
      return ['green', '✓'];
    case control.StageStatus.STAGE_STATUS_ERROR:
      return ['red', '✗'];
    case control.StageStatus.STAGE_STATUS_ONGOING:
      return ['cyan', SPINNER[tick % SPINNER.length]!];
    case control.StageStatus.STAGE_STATUS_CANCELED:
      return ['yellow', '⊘'];
    case control.StageStatus.STAGE_STATUS_SKIPPED:
      return ['dim', '-'];
    default:
      return ['dim', '·'];
  }
}

function bar(done: number, total: number, width: number): string {
  const filled = total === 0 ? width : Math.round((done / total) * width);
  return `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
}

export function stagesInOrder(d: control.Deployment): control.StageRun[] {
  return [...d.stages].sort((a, b) => a.order - b.order);
}

const reverse = (d: control.Deployment) =>
  d.action === control.Action.ACTION_STOP || d.action === control.Action.ACTION_DELETE;

export interface FrameInput {
  run: control.Deployment;
  context: RunContext;
  now: number;
  tick: number;
  width: number;
  height: number;
  paint: Paint;
}

/** The live view: one frame, at most `height` lines of at most `width` columns. */
export function renderFrame(input: FrameInput): string[] {
  const { run, context, now, tick, paint } = input;
  const width = Math.max(20, input.width - 1);
  const out: Segment[][] = [];
  const status = runStatusName(run.status);
  const elapsed = runElapsed(run, now);
  out.push([
    ['bold', context.title],
    ['dim', `  run ${run.id}  `],
    [runStyle(run.status), status],
    ['dim', elapsed === undefined ? '' : `  ${duration(elapsed)}`],
  ]);
  if (run.status === control.DeploymentStatus.DEPLOYMENT_STATUS_QUEUED) {
    out.push([
      ['yellow', `waiting in the environment's queue: position ${run.queuePosition || '?'}`],
      ['dim', ' (1 = next; one run per environment at a time)'],
      ['dim', run.waitsFor ? `, waits for run ${run.waitsFor}` : ''],
    ]);
  } else {
    const settled = run.services.filter((s) => isSettled(s.status)).length;
    out.push([
      [runStyle(run.status), bar(settled, run.services.length, 24)],
      ['plain', ` ${settled}/${run.services.length} services finished`],
      ['dim', reverse(run) ? '   (stages run in reverse order)' : ''],
    ]);
  }
  out.push([]);

  // A queued run is not planned yet: show what the dry run expects it to touch.
  const shape: control.Deployment =
    run.stages.length === 0 && context.plan
      ? {
          ...run,
          stages: context.plan.stages.map((st) => ({ ...st, status: control.StageStatus.STAGE_STATUS_QUEUED })),
          services: context.plan.services.map((sv) => ({
            ...sv,
            status:
              sv.status === control.ServiceState.SERVICE_STATE_SKIPPED
                ? sv.status
                : control.ServiceState.SERVICE_STATE_QUEUED,
            steps: [],
          })),
        }
      : run;
  const nameWidth = Math.max(8, ...shape.services.map((s) => [...s.name].length));
  const stageWidth = Math.max(12, ...shape.stages.map((s) => [...s.name].length));
  const stateWidth = 17;
  const stepWidth = 20;
  for (const stage of stagesInOrder(shape)) {
    out.push([
      stageIcon(stage.status, tick),
      ['plain', ` ${String(stage.order).padStart(2)}  `],
      ['bold', pad(stage.name, stageWidth)],
      ['plain', '  '],
      [stageStyle(stage.status), stageStatusName(stage.status)],
    ]);
    const members = shape.services.filter((s) => s.stageId === stage.stageId);
    for (const s of members) {
      const open = currentStep(s);
      const failed = failedStep(s);
      const stepText = open
        ? stepName(open.kind)
        : failed
          ? `${stepName(failed.kind)} failed`
          : s.status === control.ServiceState.SERVICE_STATE_SKIPPED && s.message
            ? s.message
            : '';
      const spent = serviceElapsed(s, now);
      // The run says what it expects of each service once it has started; a queued one, the dry run.
      const expected =
        s.expectedSteps.length > 0
          ? s.expectedSteps
          : context.plan?.services.find((p) => p.serviceId === s.serviceId)?.steps.map((st) => st.kind);
      const { done, total } = progressOf(s, expected);
      const boxes = total === 0 ? '' : `${'▰'.repeat(done)}${'▱'.repeat(Math.max(0, total - done))} ${done}/${total}`;
      out.push([
        ['plain', '      '],
        icon(s.status, tick),
        ['plain', ` ${pad(s.name, nameWidth)}  `],
        [stateStyle(s.status), pad(stateName(s.status), stateWidth)],
        [open ? 'cyan' : failed ? 'red' : 'dim', pad(stepText, stepWidth)],
        ['plain', ` ${(spent === undefined ? '' : duration(spent)).padStart(7)}  `],
        [stateStyle(s.status), boxes],
      ]);
      if (isErrorState(s.status)) {
        const why = failed?.message || s.message;
        if (why)
          out.push([
            ['plain', '          '],
            ['red', why],
          ]);
        for (const l of context.failureLogs.get(s.serviceId) ?? [])
          out.push([
            ['dim', '          │ '],
            ['plain', l],
          ]);
      }
    }
  }
  if (isFinished(run) && run.message) out.push([], [[runStyle(run.status), run.message]]);

  let lines = out;
  const height = Math.max(3, input.height - 1);
  if (lines.length > height) {
    const hidden = lines.length - (height - 1);
    lines = [...lines.slice(0, height - 1), [['dim', `… ${hidden} more lines (the summary follows at the end)`]]];
  }
  return lines.map((segments) => line(segments, width, paint));
}

// --- non-TTY: one timestamped line per change ---

const stepKey = (serviceId: string, st: control.Step, i: number) => `${serviceId}/${i}/${st.kind}`;

/** Lines for what changed between two updates of a run (prev undefined: the first update). */
export function changeLines(prev: control.Deployment | undefined, next: control.Deployment, now: number): string[] {
  const out: string[] = [];
  const ts = new Date(now).toISOString();
  if (!prev && next.merged) out.push(`${ts} merged: this request joined queued run ${next.id}`);
  if (!prev && next.resumedFrom)
    out.push(`${ts} resumes run ${next.resumedFrom}: what succeeded there is not run again`);
  if (
    !prev ||
    prev.status !== next.status ||
    prev.queuePosition !== next.queuePosition ||
    prev.waitsFor !== next.waitsFor
  ) {
    const queued = next.status === control.DeploymentStatus.DEPLOYMENT_STATUS_QUEUED;
    const waits = queued && next.waitsFor ? `, waits for run ${next.waitsFor}` : '';
    out.push(
      `${ts} run ${next.id} ${runStatusName(next.status)}${queued ? ` (queue position ${next.queuePosition || '?'}, 1 = next${waits})` : ''}${
        isFinished(next) && next.message ? `: ${next.message}` : ''
      }`,
    );
  }
  const prevStages = new Map((prev?.stages ?? []).map((s) => [s.stageId, s.status]));
  for (const stage of stagesInOrder(next)) {
    if (prevStages.get(stage.stageId) !== stage.status) {
      out.push(`${ts} stage ${stage.order} ${JSON.stringify(stage.name)} ${stageStatusName(stage.status)}`);
    }
  }
  const prevServices = new Map((prev?.services ?? []).map((s) => [s.serviceId, s]));
  for (const s of next.services) {
    const before = prevServices.get(s.serviceId);
    const seen = new Map((before?.steps ?? []).map((st, i) => [stepKey(s.serviceId, st, i), st]));
    s.steps.forEach((st, i) => {
      // Queue waits show as the service's QUEUED state already; their steps would only add noise.
      if (QUEUEING.includes(st.kind)) return;
      const old = seen.get(stepKey(s.serviceId, st, i));
      if (!old && st.startedAt) out.push(`${ts} ${s.name} step ${stepName(st.kind)} started`);
      if (st.finishedAt && !old?.finishedAt) {
        out.push(
          `${ts} ${s.name} step ${stepName(st.kind)} ${outcomeName(st.outcome)} in ${duration(stepMillis(st, now))}${st.message ? `: ${st.message}` : ''}`,
        );
      }
    });
    if (!before || before.status !== s.status) {
      out.push(`${ts} ${s.name} ${stateName(s.status)}${s.message && !isDoneState(s.status) ? `: ${s.message}` : ''}`);
    }
  }
  return out;
}

// --- the summary at the end ---

/** Queue waits shorter than this stay out of the summary: they are noise, not information. */
const NOTABLE_WAIT_MS = 500;

export function summaryLines(run: control.Deployment, context: RunContext, paint: Paint, now: number): string[] {
  const out: string[] = [];
  const elapsed = runElapsed(run, now);
  const failing = run.services.filter((x) => isErrorState(x.status));
  out.push(
    `${paint('bold', context.title)}: run ${run.id} ${paint(runStyle(run.status), runStatusName(run.status))}${
      elapsed === undefined ? '' : ` in ${duration(elapsed)}`
    }${run.message && failing.length === 0 ? ` — ${run.message}` : ''}`,
  );
  const rows: string[][] = [];
  const owner: (control.StageRun | undefined)[] = [];
  for (const stage of stagesInOrder(run)) {
    for (const s of run.services.filter((x) => x.stageId === stage.stageId)) {
      const steps = s.steps
        .filter((st) => !QUEUEING.includes(st.kind) || stepMillis(st, now) >= NOTABLE_WAIT_MS)
        .map((st) => {
          const outcome =
            st.outcome === control.StepOutcome.STEP_OUTCOME_SUCCESS || st.outcome === 0
              ? ''
              : ` (${outcomeName(st.outcome).toLowerCase().replace('_', ' ')})`;
          return `${stepName(st.kind)} ${st.finishedAt ? duration(stepMillis(st, now)) : '…'}${outcome}`;
        })
        .join(' · ');
      const endpoints = s.endpoints.map((e) => e.url).join(' ');
      const note =
        s.message &&
        (s.status === control.ServiceState.SERVICE_STATE_SKIPPED ||
          s.status === control.ServiceState.SERVICE_STATE_CANCELED)
          ? `(${s.message})`
          : '';
      rows.push([
        s.name,
        paint(stateStyle(s.status), stateName(s.status)),
        [steps, note, endpoints === '' ? '' : paint('blue', `→ ${endpoints}`)].filter((x) => x !== '').join('  '),
      ]);
      owner.push(stage);
    }
  }
  const serviceLines = table(rows);
  let at = 0;
  for (const stage of stagesInOrder(run)) {
    out.push(
      `  stage ${stage.order}  ${paint('bold', stage.name)}  ${paint(stageStyle(stage.status), stageStatusName(stage.status))}`,
    );
    while (at < serviceLines.length && owner[at] === stage) out.push(`      ${serviceLines[at++]}`);
  }
  for (const s of failing) {
    const failed = failedStep(s);
    out.push(
      '',
      paint(
        'red',
        `${s.name} failed${failed ? ` in ${stepName(failed.kind)}` : ''}: ${failed?.message || s.message || 'no message'}`,
      ),
    );
    const logs = context.failureLogs.get(s.serviceId) ?? [];
    if (logs.length > 0) {
      out.push(`  last log lines${failed ? ` of ${stepName(failed.kind)}` : ''}:`);
      for (const l of logs) out.push(`  │ ${l}`);
    }
  }
  return out;
}

/** "deploy demo/staging", or "deploy demo/staging (api)" for a service-level run. */
export function runTitle(d: control.Deployment, environment: string, serviceNames?: string[]): string {
  if (d.serviceIds.length === 0) return `${actionName(d.action).toLowerCase()} ${environment}`;
  // A queued run lists no services yet: the caller may know their names.
  const names = d.services.length > 0 ? d.services.map((s) => s.name) : (serviceNames ?? d.serviceIds);
  return `${actionName(d.action).toLowerCase()} ${environment} (${names.join(', ')})`;
}
