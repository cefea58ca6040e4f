// Scenario 1 — orchestration overhead: one environment of 64 services (the limit of one environment) in 4
// stages, noop executors that take 0 ms, so everything measured is Stageline itself: request → run
// finished, and the gap between the last deploy of a stage and the first deploy of the next.
import { control } from '@stageline/proto';
import { cpuBetween, sampleCpu } from '../lib/cpu.ts';
import { createEnvironment, deployAndWait, deploySteps, ms, stepsOf } from '../lib/driver.ts';
import { SECURITY_NOTE } from '../lib/floor.ts';
import { activityBetween, dbActivity } from '../lib/pg.ts';
import { fmtSummary, type ScenarioResult } from '../lib/report.ts';
import { type Scenario, scaled } from '../lib/scenario.ts';
import { startStack } from '../lib/stack.ts';
import { quantile, summarize } from '../lib/stats.ts';

const { StepKind } = control;

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
    const stack = await startStack({
      label: 'overhead',
      executor: 'noop',
      noop: { ms: 0 },
      logDir: ctx.logDir,
      profile: ctx.profile,
      ...(process.env.BENCH_PLANNER_DEBUG ? { serviceEnv: { planner: { LOG_LEVEL: 'debug' } } } : {}),
    });
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
      for (let r = 0; r < reps; r++) {
        const events0 = stack.runs.events;
        const bytes0 = stack.runs.bytes;
        const db0 = await dbActivity(stack.databaseUrl);
        const nats0 = await stack.natsCounters();
        const cpu0 = sampleCpu(stack.cpuTargets());
        const { run, requestedAt, seenAt } = await deployAndWait(stack, env.id);
        const cpu1 = sampleCpu(stack.cpuTargets());
        const nats1 = await stack.natsCounters();
        // Backends publish their statistics at most once a second.
        await new Promise((r) => setTimeout(r, 1200));
        const db = activityBetween(db0, await dbActivity(stack.databaseUrl));
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
        ctx.log(`overhead rep ${r + 1}/${reps}: ${seenAt - requestedAt} ms`);
      }

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
      const diagnosis = [
        `per service (a mirror job and a deploy job): ${per(med((r) => r.db?.commits ?? Number.NaN))} PostgreSQL ` +
          `commits, ~${per(med((r) => r.db?.statements ?? Number.NaN))} SQL statements, ${per(med((r) => r.natsIn))} NATS messages, ` +
          `${per(med((r) => r.runEvents))} run events of ${(med((r) => r.runEventBytes / r.runEvents) / 1024).toFixed(1)} KiB ` +
          `(deltas: the services an event changed; the first and last whole), and CPU ms: planner ${per(med((r) => (r.cpu.planner?.seconds ?? 0) * 1000))}, ` +
          `postgres ${per(med((r) => (r.cpu.postgres?.seconds ?? 0) * 1000))}, control ${per(med((r) => (r.cpu.control?.seconds ?? 0) * 1000))}, ` +
          `nats ${per(med((r) => (r.cpu['nats-server']?.seconds ?? 0) * 1000))}, workers ` +
          `${per(med((r) => ((r.cpu.build?.seconds ?? 0) + (r.cpu.deploy?.seconds ?? 0)) * 1000))}.`,
        `stage transitions (p50 ${quantile(allTransitions, 0.5).toFixed(0)} ms): with 0 ms jobs, the time the planner ` +
          "takes to work through the reports queued in front of the last deploy's JobFinished, then dispatch the next stage.",
      ];
      return {
        diagnosis,
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
        },
        repetitions,
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
                'per service-deploy: commits / SQL statements (approx.) / NATS messages',
                `${per(med((r) => r.db?.commits ?? Number.NaN))} / ${per(med((r) => r.db?.statements ?? Number.NaN))} / ${per(med((r) => r.natsIn))}`,
                '',
                '',
              ],
              ...cpuNames.map((n) => [`CPU s: ${n}`, fmtSummary(cpuSeconds[n]!, 2, ' s'), '', '']),
            ],
            notes: [
              'noop executor: every mirror and deploy takes 0 ms, so all of this is orchestration.',
              SECURITY_NOTE,
              "SQL statements: table scans + rows inserted (pg_stat_user_tables); NATS messages: in_msgs of the stack's own nats-server (/varz).",
              `transitions: ${allTransitions.length} samples (${stages - 1} per run).`,
            ],
          },
        ],
      };
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${stack.tail()}`);
    } finally {
      await stack.stop();
    }
  },
};
