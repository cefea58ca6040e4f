// Scenario 1 — orchestration overhead: one environment of 64 services (the limit of one environment) in 4
// stages, noop executors that take 0 ms, so everything measured is Stageline itself: request → run
// finished, and the gap between the last deploy of a stage and the first deploy of the next.
import { control } from '@stageline/proto';
import { cpuBetween, sampleCpu } from '../lib/cpu.ts';
import { createEnvironment, deployAndWait, deploySteps, ms, stepsOf } from '../lib/driver.ts';
import { type Floor, SECURITY_NOTE } from '../lib/floor.ts';
import { activityBetween, dbActivity } from '../lib/pg.ts';
import { type Cell, fmtSummary, type ScenarioResult, type Table } from '../lib/report.ts';
import { type Scenario, type ScenarioContext, scaled } from '../lib/scenario.ts';
import { startStack } from '../lib/stack.ts';
import { quantile, summarize } from '../lib/stats.ts';
import { type TargetRow, target } from '../lib/targets.ts';
import { type Scraper, startCollector, startScraper, statementSources } from '../lib/telemetry.ts';

const { StepKind } = control;

/** What CPU per service-deploy counts: Stageline's processes, NATS and PostgreSQL (not the benchmark, not other work). */
const STACK = ['control', 'planner', 'build', 'deploy', 'nats-server', 'postgres'];

/**
 * The run's critical path with 0 ms jobs: the request, the first stage's mirrors, then each stage's deploys
 * (later stages' mirrors run in the shadow of earlier deploys) — each a dispatch (one commit, one publish)
 * and a result (one publish) in a row.
 */
const criticalPathSteps = (stages: number) => 2 + stages;
const criticalPathMs = (floor: Floor, stages: number) =>
  criticalPathSteps(stages) * (floor.commitMs + 2 * floor.publishMs);

interface OverheadFigures {
  requestToFinishedMs: number;
  transitionP50Ms: number;
  stackCpuMsPerService: number;
  statementsPerService: number;
  natsPerService: number;
  commitsPerService: number;
}

/** The targets this scenario measures, against the floor of the same run. */
function overheadTargets(floor: Floor | undefined, services: number, stages: number, f: OverheadFigures): TargetRow[] {
  const per100 = (f.requestToFinishedMs * 100) / services;
  return [
    target({
      figure: "stage transition p50 (last deploy → next stage's first deploy)",
      scenario: 'overhead',
      value: f.transitionP50Ms,
      unit: 'ms',
      direction: 'max',
      limit: 10,
      digits: 1,
      floor: floor ? `${floor.transitionMs.toFixed(2)} ms (1 commit + 1 publish)` : '–',
    }),
    target({
      // An environment holds at most 64 services (control's limit): 100 cannot be requested, so the
      // 64-service run is measured and projected linearly (cost per service constant).
      figure: `100 services in ${stages} stages, request → finished (PROJECTED: ${services} measured × 100/${services})`,
      scenario: 'overhead',
      value: per100,
      unit: 'ms',
      direction: 'max',
      limit: 400,
      digits: 0,
      shown: `${per100.toFixed(0)} ms (${services}: ${f.requestToFinishedMs.toFixed(0)} ms)`,
      floor: floor ? `${criticalPathMs(floor, stages).toFixed(1)} ms (critical path)` : '–',
    }),
    target({
      figure: `CPU per service-deploy, Stageline + NATS + PostgreSQL (one run of ${services})`,
      scenario: 'overhead',
      value: f.stackCpuMsPerService,
      unit: 'ms',
      direction: 'max',
      limit: 7,
      digits: 1,
      floor: floor ? `${floor.serviceDeployCpuMs.toFixed(2)} ms (1 commit + 2 publishes)` : '–',
    }),
    target({
      figure: 'SQL statements per service-deploy',
      scenario: 'overhead',
      value: f.statementsPerService,
      unit: '',
      direction: 'max',
      limit: 8,
      digits: 1,
      floor: `1 (one commit; this run ${f.commitsPerService.toFixed(1)} commits)`,
    }),
    target({
      figure: 'NATS messages per service-deploy',
      scenario: 'overhead',
      value: f.natsPerService,
      unit: '',
      direction: 'max',
      limit: 20,
      digits: 1,
      floor: '2 (a job and an event)',
    }),
  ];
}

interface OverheadRep {
  requestToFinishedMs: number;
  serverRunMs: number;
  requestToStartMs: number;
  transitionsMs: number[];
  buildQueueingMs: number[];
  deployQueueingMs: number[];
  runEvents: number;
  runEventBytes: number;
  cpu: ReturnType<typeof cpuBetween>;
  db: ReturnType<typeof activityBetween>;
  /** Messages the stack's nats-server received during the run. */
  natsIn: number;
}

export const overhead: Scenario = {
  name: 'overhead',
  title: '1. Orchestration overhead (noop 0 ms)',
  async run(ctx): Promise<ScenarioResult> {
    // An environment holds at most 64 services (control's limits): --scale only shrinks this one.
    const services = Math.min(64, scaled(64, ctx.scale, 8));
    const stages = 4;
    const reps = ctx.reps ?? 5;
    // Twice: observability off (no OTEL_*: the no-op tracer; nobody scrapes /metrics), then on (every
    // span exported over OTLP to a receiver of the bench's, each service's /metrics scraped every second).
    const off = await measure(ctx, { label: 'overhead', services, stages, reps, telemetry: false });
    const on = await measure(ctx, { label: 'overhead-telemetry', services, stages, reps, telemetry: true });
    const repetitions = off.repetitions;
    const total = summarize(repetitions.map((r) => r.requestToFinishedMs));
    const allTransitions = repetitions.flatMap((r) => r.transitionsMs);
    const perStage = summarize(repetitions.map((r) => quantile(r.transitionsMs, 0.5)));
    const dq = repetitions.flatMap((r) => r.deployQueueingMs);
    const bq = repetitions.flatMap((r) => r.buildQueueingMs);
    const perService = summarize(repetitions.map((r) => r.requestToFinishedMs / services));
    const commits = repetitions.map((r) => r.db?.commits ?? Number.NaN);
    const events = summarize(repetitions.map((r) => r.runEvents));
    const cpuNames = Object.keys(repetitions[0]?.cpu ?? {});
    const cpuSeconds = Object.fromEntries(
      cpuNames.map((n) => [n, summarize(repetitions.map((r) => r.cpu[n]?.seconds ?? 0))]),
    );
    const med = (pick: (r: OverheadRep) => number) => summarize(repetitions.map(pick)).median;
    const per = (x: number) => (x / services).toFixed(1);
    const observability = compare(off, on, services);
    const diagnosis = [
      `per service (a mirror job and a deploy job): ${per(med((r) => r.db?.commits ?? Number.NaN))} PostgreSQL ` +
        `commits, ${per(med((r) => r.db?.statements ?? Number.NaN))} SQL statements, ${per(med((r) => r.natsIn))} NATS messages, ` +
        `${per(med((r) => r.runEvents))} run events of ${(med((r) => r.runEventBytes / r.runEvents) / 1024).toFixed(1)} KiB ` +
        `(deltas: the services an event changed; the first and last whole), and CPU ms: planner ${per(med((r) => (r.cpu.planner?.seconds ?? 0) * 1000))}, ` +
        `postgres ${per(med((r) => (r.cpu.postgres?.seconds ?? 0) * 1000))}, control ${per(med((r) => (r.cpu.control?.seconds ?? 0) * 1000))}, ` +
        `nats ${per(med((r) => (r.cpu['nats-server']?.seconds ?? 0) * 1000))}, workers ` +
        `${per(med((r) => ((r.cpu.build?.seconds ?? 0) + (r.cpu.deploy?.seconds ?? 0)) * 1000))}.`,
      `stage transitions (p50 ${quantile(allTransitions, 0.5).toFixed(0)} ms): with 0 ms jobs, the time the planner ` +
        "takes to work through the reports queued in front of the last deploy's JobFinished, then dispatch the next stage.",
    ];
    const stackCpuMs = med((r) => STACK.reduce((sum, n) => sum + (r.cpu[n]?.seconds ?? 0), 0) * 1000);
    const targets = overheadTargets(ctx.floor, services, stages, {
      requestToFinishedMs: total.median,
      transitionP50Ms: quantile(allTransitions, 0.5),
      stackCpuMsPerService: stackCpuMs / services,
      statementsPerService: med((r) => r.db?.statements ?? Number.NaN) / services,
      natsPerService: med((r) => r.natsIn) / services,
      commitsPerService: med((r) => r.db?.commits ?? Number.NaN) / services,
    });
    return {
      diagnosis,
      targets,
      scenario: 'overhead',
      title: this.title,
      parameters: { services, stages, reps, executor: 'noop (0 ms)', jobsPerRun: services * 2 },
      figures: {
        requestToFinishedMs: total,
        perServiceMs: perService,
        transitionP50Ms: quantile(allTransitions, 0.5),
        transitionP99Ms: quantile(allTransitions, 0.99),
        transitionMedianPerRep: perStage,
        deployQueueingP50Ms: quantile(dq, 0.5),
        deployQueueingP99Ms: quantile(dq, 0.99),
        buildQueueingP50Ms: quantile(bq, 0.5),
        buildQueueingP99Ms: quantile(bq, 0.99),
        runEvents: events,
        dbCommitsPerRun: summarize(commits),
        cpuSecondsPerRun: cpuSeconds,
        observability: observability.figures,
      },
      repetitions: [
        ...repetitions.map((r) => ({ telemetry: 'off', ...r })),
        ...on.repetitions.map((r) => ({ telemetry: 'on', ...r })),
      ],
      tables: [
        {
          title: `${this.title}: ${services} services in ${stages} stages, ${reps} runs, NOOP EXECUTOR`,
          columns: ['figure', 'median (min–max)', 'p50', 'p99'],
          rows: [
            ['request → run finished', fmtSummary(total, 0, ' ms'), '', ''],
            ['  per service (mirror + deploy)', fmtSummary(perService, 1, ' ms'), '', ''],
            [
              'stage transition (last deploy → next first deploy)',
              fmtSummary(perStage, 0, ' ms'),
              `${quantile(allTransitions, 0.5).toFixed(0)} ms`,
              `${quantile(allTransitions, 0.99).toFixed(0)} ms`,
            ],
            [
              'dispatch → worker start (DEPLOYMENT_QUEUEING)',
              '',
              `${quantile(dq, 0.5).toFixed(0)} ms`,
              `${quantile(dq, 0.99).toFixed(0)} ms`,
            ],
            [
              'dispatch → worker start (BUILD_QUEUEING)',
              '',
              `${quantile(bq, 0.5).toFixed(0)} ms`,
              `${quantile(bq, 0.99).toFixed(0)} ms`,
            ],
            [
              '  floor: one commit + one publish (same machine, same run)',
              ctx.floor ? `${ctx.floor.transitionMs.toFixed(1)} ms` : '–',
              '',
              '',
            ],
            ['run events published', fmtSummary(events), '', ''],
            ['PostgreSQL commits (approx.)', fmtSummary(summarize(commits)), '', ''],
            [
              'per service-deploy: commits (approx.) / SQL statements / NATS messages',
              `${per(med((r) => r.db?.commits ?? Number.NaN))} / ${per(med((r) => r.db?.statements ?? Number.NaN))} / ${per(med((r) => r.natsIn))}`,
              '',
              '',
            ],
            ...cpuNames.map((n) => [`CPU s: ${n}`, fmtSummary(cpuSeconds[n]!, 2, ' s'), '', '']),
            ['CPU ms per service-deploy: Stageline + NATS + PostgreSQL', (stackCpuMs / services).toFixed(1), '', ''],
            [
              '  floor: one commit + two publishes, their CPU (same run)',
              ctx.floor ? `${ctx.floor.serviceDeployCpuMs.toFixed(2)} ms` : '–',
              '',
              '',
            ],
            [
              `  floor of the run: its critical path, ${criticalPathSteps(stages)} × (commit + 2 publishes)`,
              ctx.floor ? `${criticalPathMs(ctx.floor, stages).toFixed(1)} ms` : '–',
              '',
              '',
            ],
          ],
          notes: [
            'noop executor: every mirror and deploy takes 0 ms, so all of this is orchestration.',
            SECURITY_NOTE,
            "SQL statements: sent by the services, as each counts them (stageline_db_statements_total; begin and commit not included); NATS messages: in_msgs of the stack's own nats-server (/varz).",
            `transitions: ${allTransitions.length} samples (${stages - 1} per run).`,
          ],
        },
        observability.table,
      ],
    };
  },
};

interface Measured {
  repetitions: OverheadRep[];
  /** With telemetry on: spans received (measured runs), exports, scrapes of /metrics (and their bytes). */
  telemetry: { spans: number; exports: number; scrapes: number; bytes: number; failures: number } | undefined;
}

async function measure(
  ctx: ScenarioContext,
  options: { label: string; services: number; stages: number; reps: number; telemetry: boolean },
): Promise<Measured> {
  const { services, stages, reps } = options;
  const collector = options.telemetry ? await startCollector() : undefined;
  const stack = await startStack({
    label: options.label,
    executor: 'noop',
    noop: { ms: 0 },
    logDir: ctx.logDir,
    profile: ctx.profile,
    ...(process.env.BENCH_PLANNER_DEBUG ? { serviceEnv: { planner: { LOG_LEVEL: 'debug' } } } : {}),
    ...(collector
      ? {
          env: {
            OTEL_TRACES_EXPORTER: 'otlp',
            OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint,
            // Batches every 250 ms rather than 5 s: the exports fall inside the measured runs (~1 s each),
            // whose CPU they are counted in (more, smaller exports: if anything, dearer than the default).
            OTEL_BSP_SCHEDULE_DELAY: '250',
          },
        }
      : {}),
  });
  let scraper: Scraper | undefined;
  try {
    const env = await createEnvironment(stack, {
      project: 'bench',
      name: 'overhead',
      stages,
      services: Array.from({ length: services }, (_, i) => ({
        name: `svc-${i}`,
        stage: Math.floor((i * stages) / services),
      })),
    });
    // One run first, not measured: JIT warm-up, connection pools, consumers created.
    await deployAndWait(stack, env.id);

    const repetitions: OverheadRep[] = [];
    scraper = options.telemetry ? startScraper(stack) : undefined;
    const spans0 = collector?.counts().spans ?? 0;
    for (let r = 0; r < reps; r++) {
      const events0 = stack.runs.events;
      const bytes0 = stack.runs.bytes;
      const db0 = await dbActivity(statementSources(stack));
      const nats0 = await stack.natsCounters();
      const cpu0 = sampleCpu(stack.cpuTargets());
      const { run, requestedAt, seenAt } = await deployAndWait(stack, env.id);
      const cpu1 = sampleCpu(stack.cpuTargets());
      const nats1 = await stack.natsCounters();
      // Backends publish their statistics at most once a second.
      await new Promise((r) => setTimeout(r, 1200));
      const db = activityBetween(db0, await dbActivity(statementSources(stack)));
      const deploys = deploySteps(run);
      const transitions: number[] = [];
      for (let k = 0; k + 1 < env.stageIds.length; k++) {
        const here = deploys.filter((d) => d.stageId === env.stageIds[k]);
        const next = deploys.filter((d) => d.stageId === env.stageIds[k + 1]);
        if (here.length === 0 || next.length === 0) continue;
        transitions.push(Math.min(...next.map((d) => d.start)) - Math.max(...here.map((d) => d.end)));
      }
      const queueing = (kind: control.StepKind) => stepsOf(run, [kind]).map((s) => s.end - s.start);
      repetitions.push({
        requestToFinishedMs: seenAt - requestedAt,
        serverRunMs: ms(run.finishedAt) - ms(run.createdAt),
        requestToStartMs: ms(run.startedAt) - ms(run.createdAt),
        transitionsMs: transitions,
        buildQueueingMs: queueing(StepKind.STEP_KIND_BUILD_QUEUEING),
        deployQueueingMs: queueing(StepKind.STEP_KIND_DEPLOYMENT_QUEUEING),
        runEvents: stack.runs.events - events0,
        runEventBytes: stack.runs.bytes - bytes0,
        cpu: cpuBetween(cpu0, cpu1),
        db,
        natsIn: nats1.inMsgs - nats0.inMsgs,
      });
      ctx.log(`${options.label} rep ${r + 1}/${reps}: ${seenAt - requestedAt} ms`);
    }
    await scraper?.stop();
    // The last batch of the measured runs' spans.
    await new Promise((resolve) => setTimeout(resolve, collector ? 1_000 : 0));
    const telemetry =
      collector && scraper
        ? { spans: collector.counts().spans - spans0, exports: collector.counts().exports, ...scraper.counts() }
        : undefined;
    return { repetitions, telemetry };
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${stack.tail()}`);
  } finally {
    await scraper?.stop();
    await stack.stop();
    await collector?.close();
  }
}

/** Metrics and tracing on vs off: the same runs on two stacks, one after the other. */
function compare(off: Measured, on: Measured, services: number): { figures: Record<string, unknown>; table: Table } {
  const total = (m: Measured) => summarize(m.repetitions.map((r) => r.requestToFinishedMs));
  const cpu = (m: Measured, names: readonly string[]) =>
    summarize(m.repetitions.map((r) => names.reduce((sum, n) => sum + (r.cpu[n]?.seconds ?? 0), 0)));
  const serviceNames = ['control', 'planner', 'build', 'deploy'] as const;
  const ratio = (a: number, b: number) => (b === 0 ? Number.NaN : (a / b - 1) * 100);
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(1)} %`;
  const offTotal = total(off);
  const onTotal = total(on);
  const offCpu = cpu(off, serviceNames);
  const onCpu = cpu(on, serviceNames);
  const t = on.telemetry;
  const runs = on.repetitions.length;
  const figures = {
    requestToFinishedOffMs: offTotal,
    requestToFinishedOnMs: onTotal,
    requestToFinishedChangePct: ratio(onTotal.median, offTotal.median),
    serviceCpuOffSeconds: offCpu,
    serviceCpuOnSeconds: onCpu,
    serviceCpuChangePct: ratio(onCpu.median, offCpu.median),
    spansPerRun: t ? t.spans / runs : Number.NaN,
    scrapes: t?.scrapes ?? 0,
  };
  const rows: Cell[][] = [
    [
      'request → run finished',
      fmtSummary(offTotal, 0, ' ms'),
      fmtSummary(onTotal, 0, ' ms'),
      pct(figures.requestToFinishedChangePct),
    ],
    [
      'CPU s of the four services, per run',
      fmtSummary(offCpu, 2, ' s'),
      fmtSummary(onCpu, 2, ' s'),
      pct(figures.serviceCpuChangePct),
    ],
    ...serviceNames.map((n): Cell[] => {
      const a = cpu(off, [n]);
      const b = cpu(on, [n]);
      return [`  CPU s: ${n}`, fmtSummary(a, 2, ' s'), fmtSummary(b, 2, ' s'), pct(ratio(b.median, a.median))];
    }),
    [
      'spans exported per run (per service-deploy)',
      '0',
      t ? `${(t.spans / runs).toFixed(0)} (${(t.spans / runs / services).toFixed(1)})` : '–',
      '',
    ],
    [
      'scrapes of /metrics (all services, 1 s apart)',
      '0',
      t ? `${t.scrapes} (${(t.bytes / Math.max(1, t.scrapes) / 1024).toFixed(1)} KiB each)` : '–',
      '',
    ],
  ];
  return {
    figures,
    table: {
      title: `1b. Observability overhead: metrics and tracing off vs on (same ${services} services, ${runs} runs each)`,
      columns: ['figure', 'off', 'on', 'change'],
      rows,
      notes: [
        'off: no OTEL_* (the no-op tracer: spans cost a function call); nobody scrapes /metrics. Counters are always kept in memory: there is no switch for them.',
        "on: OTEL_TRACES_EXPORTER=otlp to a receiver of the bench (OTLP/HTTP JSON, batches every 250 ms so they land inside the measured runs), every span sampled; each service's /metrics scraped every second.",
        'Two stacks one after the other on a shared machine: a change within the spread of either side is noise.',
      ],
    },
  };
}
