// --watch: follow a run to its end with WatchDeployment, redrawing the live view on a terminal or
// writing timestamped lines elsewhere, then print the summary. Ctrl-C stops watching, not the run.
import type * as grpc from '@grpc/grpc-js';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import type { Context } from './context.ts';
import { isErrorState, isFinished } from './view/format.ts';
import { changeLines, type RunContext, renderFrame, summaryLines } from './view/run-view.ts';

const TICK_MS = 125;
const FAILURE_LOG_LINES = 8;

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching escape sequences is the point
const ESCAPES = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;
/** Removes what could move the cursor or change colours: log lines come from containers. */
export const sanitize = (s: string) => s.replace(ESCAPES, '').replace(CONTROLS, '');

/** The last lines a service logged in a run, those of one step when it logged any. */
export async function lastLogLines(
  ctx: Context,
  deploymentId: string,
  serviceId: string,
  step: control.StepKind | undefined,
  count = FAILURE_LOG_LINES,
): Promise<string[]> {
  const lines: control.LogLine[] = [];
  await new Promise<void>((resolve) => {
    const call = ctx.clients.deployments.streamLogs(
      { deploymentId, serviceId, follow: false },
      { deadline: Date.now() + 10_000 },
    );
    call.on('data', (m: control.StreamLogsResponse) => {
      if (m.line) lines.push(m.line);
    });
    // Logs are a courtesy here: a failure to read them never hides the run's outcome.
    call.on('error', () => resolve());
    call.on('end', () => resolve());
  });
  const ofStep = step === undefined ? [] : lines.filter((l) => l.step === step);
  const chosen = ofStep.length > 0 ? ofStep : lines;
  return chosen.slice(-count).map((l) => sanitize(l.message.replace(/\n$/, '')));
}

/** The dry run of the same request: the steps to expect, and a shape to show while the run is queued. */
async function dryRun(ctx: Context, run: control.Deployment): Promise<control.Deployment | undefined> {
  if (isFinished(run) || run.action === control.Action.ACTION_UNSPECIFIED) return undefined;
  try {
    const { deployment } = await callUnary(
      ctx.clients.deployments,
      'planDeployment',
      {
        environmentId: run.environmentId,
        action: run.action,
        serviceIds: run.serviceIds,
        version: run.version,
        forceBuild: run.forceBuild,
        toDeploymentId: run.toDeploymentId,
        versions: run.versions,
        runLifecycleJobs: run.runLifecycleJobs,
      },
      { deadlineMs: 5_000 },
    );
    return deployment;
  } catch {
    // Without a plan the progress counts the steps seen so far.
    return undefined;
  }
}

class LiveScreen {
  readonly #ctx: Context;
  #lines = 0;
  constructor(ctx: Context) {
    this.#ctx = ctx;
  }
  get size() {
    return { width: this.#ctx.io.stdout.columns || 100, height: this.#ctx.io.stdout.rows || 40 };
  }
  draw(lines: string[]): void {
    // Synchronized output (where supported) keeps a redraw from flickering; others ignore it.
    let s = '\x1b[?2026h';
    if (this.#lines > 0) s += `\x1b[${this.#lines}F`;
    for (const l of lines) s += `\x1b[2K${l}\n`;
    s += '\x1b[J\x1b[?2026l';
    this.#lines = lines.length;
    this.#ctx.io.stdout.write(s);
  }
  clear(): void {
    if (this.#lines > 0) this.#ctx.io.stdout.write(`\x1b[${this.#lines}F\x1b[J`);
    this.#lines = 0;
  }
}

export interface FollowResult {
  final: control.Deployment;
  interrupted: boolean;
}

/** Follows a run until it finishes (or Ctrl-C) and prints its summary. */
export async function followRun(ctx: Context, first: control.Deployment, title: string): Promise<FollowResult> {
  // A started run carries its expected steps: only a queued one is planned again, to show its shape.
  const started = first.services.some((s) => s.expectedSteps.length > 0);
  const context: RunContext = { title, plan: started ? undefined : await dryRun(ctx, first), failureLogs: new Map() };
  let latest = first;
  let previous: control.Deployment | undefined;
  let tick = 0;
  const pendingLogs: Promise<void>[] = [];
  const fetchedFor = new Set<string>();
  const live = ctx.tty && ctx.format === 'text' ? new LiveScreen(ctx) : undefined;

  const render = () => {
    if (ctx.format !== 'text') return;
    if (live) {
      const { width, height } = live.size;
      live.draw(renderFrame({ run: latest, context, now: Date.now(), tick, width, height, paint: ctx.paint }));
    } else {
      for (const l of changeLines(previous, latest, Date.now())) ctx.out(l);
      previous = latest;
    }
  };
  const failureLogs = (run: control.Deployment, force = false) => {
    for (const s of run.services) {
      if (!isErrorState(s.status) || (fetchedFor.has(s.serviceId) && !force)) continue;
      fetchedFor.add(s.serviceId);
      const step = s.steps.findLast((st) => st.outcome === control.StepOutcome.STEP_OUTCOME_ERROR)?.kind;
      pendingLogs.push(
        lastLogLines(ctx, run.id, s.serviceId, step).then((lines) => {
          if (lines.length > 0 || !context.failureLogs.has(s.serviceId)) context.failureLogs.set(s.serviceId, lines);
          render();
        }),
      );
    }
  };

  let interrupted = false;
  let active: grpc.ClientReadableStream<control.WatchDeploymentResponse> | undefined;
  const stopListening = ctx.io.onInterrupt(() => {
    interrupted = true;
    active?.cancel();
  });
  const timer = live
    ? setInterval(() => {
        tick++;
        render();
      }, TICK_MS)
    : undefined;
  const onResize = () => render();
  if (live) {
    ctx.io.stdout.write('\x1b[?25l');
    ctx.io.stdout.on?.('resize', onResize);
  }

  try {
    render();
    failureLogs(latest);
    // A dropped stream (control restarting) is picked up again from the run's current state.
    for (let attempt = 0; !isFinished(latest) && !interrupted; attempt++) {
      const ok = await new Promise<boolean>((resolve) => {
        const call = ctx.clients.deployments.watchDeployment({ deploymentId: first.id });
        active = call;
        call.on('data', (m: control.WatchDeploymentResponse) => {
          if (!m.deployment) return;
          latest = m.deployment;
          attempt = 0;
          failureLogs(latest);
          render();
        });
        call.on('end', () => resolve(true));
        call.on('error', () => resolve(false));
      });
      if (interrupted || isFinished(latest)) break;
      if (!ok && attempt >= 5) {
        throw new Error(
          `lost the run's updates from ${ctx.config.address.value}: stageline watch ${first.id} picks it up again`,
        );
      }
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      latest = (await callUnary(ctx.clients.deployments, 'getDeployment', { deploymentId: first.id })).deployment!;
      render();
    }
    if (!interrupted) {
      // Logs reach their stream a moment after the state that announces the failure: read them once more.
      failureLogs(latest, true);
      await Promise.all(pendingLogs);
    }
  } finally {
    if (timer) clearInterval(timer);
    stopListening();
    if (live) {
      ctx.io.stdout.off?.('resize', onResize);
      live.clear();
      ctx.io.stdout.write('\x1b[?25h');
    }
  }

  if (ctx.format === 'text') {
    if (interrupted) {
      ctx.out(
        `stopped watching: run ${latest.id} goes on.`,
        `  stageline watch ${latest.id}     follow it again`,
        `  stageline cancel ${latest.id}    cancel it`,
      );
    } else {
      if (!live) ctx.out('');
      ctx.out(...summaryLines(latest, context, ctx.paint, Date.now()));
    }
  }
  return { final: latest, interrupted };
}
