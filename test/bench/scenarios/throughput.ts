// Scenario 2 — throughput: many environments deploying at once, noop executors that take 0 ms, with
// one and then two processes of each worker service: service-deploys finished per second, and the CPU
// each service used for them.
import { cpus } from 'node:os';
import { cpuBetween, MACHINE, sampleCpu } from '../lib/cpu.ts';
import { assertSucceeded, createEnvironment, deployAndWait, getRun, ms, pool, requestRun } from '../lib/driver.ts';
import { type Floor, SECURITY_NOTE } from '../lib/floor.ts';
import { activityBetween, dbActivity } from '../lib/pg.ts';
import { fmtSummary, type ScenarioResult } from '../lib/report.ts';
import { type Scenario, scaled } from '../lib/scenario.ts';
import { startStack } from '../lib/stack.ts';
import { quantile, type Summary, summarize } from '../lib/stats.ts';
import { type TargetRow, target } from '../lib/targets.ts';
import { statementSources } from '../lib/telemetry.ts';

const SERVICES_PER_ENV = 10;

/** What CPU per service-deploy counts: Stageline's processes, NATS and PostgreSQL (not the benchmark, not other work). */
const STACK = ['control', 'planner', 'build', 'deploy', 'nats-server', 'postgres'];

interface Round {
  wallMs: number;
  serviceDeploysPerSecond: number;
  runLatencyP50Ms: number;
  runLatencyP99Ms: number;
  serverWallMs: number;
  cpu: ReturnType<typeof cpuBetween>;
  dbCommits: number;
  /** Statements, approximated from the tables' counters (lib/pg.ts). */
  dbStatements: number;
  /** Messages the stack's own nats-server received. */
  natsIn: number;
}

interface ConfigResult {
  workers: number;
  serviceDeploysPerSecond: Summary;
  wallMs: Summary;
  runLatencyP50Ms: Summary;
  runLatencyP99Ms: Summary;
  cpuCores: Record<string, Summary>;
  cpuMsPerServiceDeploy: Record<string, Summary>;
  dbCommitsPerServiceDeploy: Summary;
  dbStatementsPerServiceDeploy: Summary;
  natsMessagesPerServiceDeploy: Summary;
  /** Stageline's processes, NATS and PostgreSQL together. */
  stackCpuMsPerServiceDeploy: Summary;
  rounds: Round[];
}

export const throughput: Scenario = {
  name: 'throughput',
  title: '2. Throughput (noop 0 ms, many environments at once)',
  async run(ctx): Promise<ScenarioResult> {
    // The example is 200 × 10; on 2 cores the planner applies ~100 job events a second, so the
    // default is sized to finish in about a minute per configuration (--scale 6.67 gives 200).
    const envCount = scaled(30, ctx.scale, 2);
    const reps = ctx.reps ?? 2;
    const stack = await startStack({
      label: 'throughput',
      executor: 'noop',
      noop: { ms: 0 },
      logDir: ctx.logDir,
      profile: ctx.profile,
    });
    try {
      const t0 = Date.now();
      const envs = await pool(
        Array.from({ length: envCount }, (_, e) => e),
        8,
        (e) =>
          createEnvironment(stack, {
            project: 'bench',
            name: `tp-${e}`,
            stages: 4,
            services: Array.from({ length: SERVICES_PER_ENV }, (_, i) => ({
              name: `svc-${i}`,
              stage: Math.floor((i * 4) / SERVICES_PER_ENV),
            })),
          }),
      );
      ctx.log(`throughput: ${envCount} environments × ${SERVICES_PER_ENV} services created in ${Date.now() - t0} ms`);
      // Warm-up, not measured.
      await deployAndWait(stack, envs[0]!.id);
      const deploysPerRound = envCount * SERVICES_PER_ENV;

      // Worker processes of each kind per configuration, in order (BENCH_THROUGHPUT_WORKERS=2,1 reverses them).
      const configs = (process.env.BENCH_THROUGHPUT_WORKERS ?? '1,2').split(',').map(Number);
      const results: ConfigResult[] = [];
      for (const workers of configs) {
        for (const kind of ['build', 'deploy'] as const) {
          while (stack.procs.filter((p) => p.name === kind).length < workers) await stack.spawnWorker(kind);
          while (stack.procs.filter((p) => p.name === kind).length > workers) {
            await stack.stopProc(stack.procs.filter((p) => p.name === kind).at(-1)!);
          }
        }
        const rounds: Round[] = [];
        for (let r = 0; r < reps; r++) {
          const db0 = await dbActivity(statementSources(stack));
          const nats0 = await stack.natsCounters();
          const cpu0 = sampleCpu(stack.cpuTargets());
          const started = Date.now();
          const requested = await pool(envs, 16, (env) => requestRun(stack, env.id));
          const seen = await Promise.all(requested.map((q) => stack.runs.wait(q.id, 900_000)));
          const wallMs = Math.max(...seen.map((s) => s.at)) - started;
          const cpu1 = sampleCpu(stack.cpuTargets());
          const nats1 = await stack.natsCounters();
          const runs = await pool(requested, 8, (q) => getRun(stack, q.id));
          for (const run of runs) assertSucceeded(run);
          // Backends publish their statistics at most once a second.
          await new Promise((res) => setTimeout(res, 1200));
          const db = activityBetween(db0, await dbActivity(statementSources(stack)));
          const latencies = seen.map((s, i) => s.at - requested[i]!.requestedAt);
          const round: Round = {
            wallMs,
            serviceDeploysPerSecond: deploysPerRound / (wallMs / 1000),
            runLatencyP50Ms: quantile(latencies, 0.5),
            runLatencyP99Ms: quantile(latencies, 0.99),
            // Server view: first run created → last run finished.
            serverWallMs:
              Math.max(...runs.map((x) => ms(x.finishedAt))) - Math.min(...runs.map((x) => ms(x.createdAt))),
            cpu: cpuBetween(cpu0, cpu1),
            dbCommits: db?.commits ?? Number.NaN,
            dbStatements: db?.statements ?? Number.NaN,
            natsIn: nats1.inMsgs - nats0.inMsgs,
          };
          rounds.push(round);
          ctx.log(
            `throughput ${workers} worker(s) round ${r + 1}/${reps}: ${round.serviceDeploysPerSecond.toFixed(1)} service-deploys/s`,
          );
        }
        const names = Object.keys(rounds[0]!.cpu);
        results.push({
          workers,
          serviceDeploysPerSecond: summarize(rounds.map((r) => r.serviceDeploysPerSecond)),
          wallMs: summarize(rounds.map((r) => r.wallMs)),
          runLatencyP50Ms: summarize(rounds.map((r) => r.runLatencyP50Ms)),
          runLatencyP99Ms: summarize(rounds.map((r) => r.runLatencyP99Ms)),
          cpuCores: Object.fromEntries(names.map((n) => [n, summarize(rounds.map((r) => r.cpu[n]!.cores))])),
          cpuMsPerServiceDeploy: Object.fromEntries(
            names.map((n) => [n, summarize(rounds.map((r) => (r.cpu[n]!.seconds * 1000) / deploysPerRound))]),
          ),
          dbCommitsPerServiceDeploy: summarize(rounds.map((r) => r.dbCommits / deploysPerRound)),
          dbStatementsPerServiceDeploy: summarize(rounds.map((r) => r.dbStatements / deploysPerRound)),
          natsMessagesPerServiceDeploy: summarize(rounds.map((r) => r.natsIn / deploysPerRound)),
          stackCpuMsPerServiceDeploy: summarize(
            rounds.map((r) => (STACK.reduce((sum, n) => sum + (r.cpu[n]?.seconds ?? 0), 0) * 1000) / deploysPerRound),
          ),
          rounds,
        });
      }

      const names = Object.keys(results[0]!.cpuCores);
      const diagnosis: string[] = [];
      const [one, two] = results;
      if (one && two && two.serviceDeploysPerSecond.median < 1.2 * one.serviceDeploysPerSecond.median) {
        const workerCores = (r: ConfigResult) => (r.cpuCores.build?.median ?? 0) + (r.cpuCores.deploy?.median ?? 0);
        diagnosis.push(
          `a second process of each worker did not raise throughput (${one.serviceDeploysPerSecond.median.toFixed(1)} → ` +
            `${two.serviceDeploysPerSecond.median.toFixed(1)} service-deploys/s): the workers were nearly idle ` +
            `(${workerCores(one).toFixed(2)} cores), the planner used ${(one.cpuCores.planner?.median ?? 0).toFixed(2)} cores with ` +
            `${one.dbCommitsPerServiceDeploy.median.toFixed(0)} PostgreSQL commits per service-deploy, and the machine was ` +
            `at ${(one.cpuCores[MACHINE]?.median ?? 0).toFixed(2)} of ${cpus().length} cores.`,
        );
      }
      return {
        diagnosis,
        targets: throughputTargets(results, ctx.floor),
        scenario: 'throughput',
        title: this.title,
        parameters: { environments: envCount, servicesPerEnvironment: SERVICES_PER_ENV, reps, executor: 'noop (0 ms)' },
        figures: Object.fromEntries(
          results.map((r) => [
            `${r.workers} worker process(es)`,
            {
              serviceDeploysPerSecond: r.serviceDeploysPerSecond,
              runLatencyP50Ms: r.runLatencyP50Ms,
              runLatencyP99Ms: r.runLatencyP99Ms,
              cpuCores: r.cpuCores,
              cpuMsPerServiceDeploy: r.cpuMsPerServiceDeploy,
              dbCommitsPerServiceDeploy: r.dbCommitsPerServiceDeploy,
              dbStatementsPerServiceDeploy: r.dbStatementsPerServiceDeploy,
              natsMessagesPerServiceDeploy: r.natsMessagesPerServiceDeploy,
              stackCpuMsPerServiceDeploy: r.stackCpuMsPerServiceDeploy,
            },
          ]),
        ),
        repetitions: results.map((r) => ({ workers: r.workers, rounds: r.rounds })),
        tables: [
          {
            title: `${this.title}: ${envCount} environments × ${SERVICES_PER_ENV} services (${deploysPerRound} service-deploys a round), ${reps} rounds, NOOP EXECUTOR`,
            columns: ['worker processes (build + deploy)', ...results.map((r) => `${r.workers} + ${r.workers}`)],
            rows: [
              ['service-deploys / s', ...results.map((r) => fmtSummary(r.serviceDeploysPerSecond, 1))],
              [
                '  floor (same machine, same run): commits / s, JetStream publishes / s',
                ...results.map(() =>
                  ctx.floor
                    ? `${ctx.floor.commitsPerSecond.toFixed(0)}, ${ctx.floor.publishesPerSecond.toFixed(0)}`
                    : '–',
                ),
              ],
              ['round wall time', ...results.map((r) => fmtSummary(r.wallMs, 0, ' ms'))],
              [
                'run latency p50 / p99 (request → finished)',
                ...results.map(
                  (r) => `${r.runLatencyP50Ms.median.toFixed(0)} / ${r.runLatencyP99Ms.median.toFixed(0)} ms`,
                ),
              ],
              ...names.map((n) => [
                `CPU ${n}: cores (ms per service-deploy)`,
                ...results.map(
                  (r) => `${r.cpuCores[n]!.median.toFixed(2)} (${r.cpuMsPerServiceDeploy[n]!.median.toFixed(1)} ms)`,
                ),
              ]),
              [
                'CPU ms per service-deploy: Stageline + NATS + PostgreSQL',
                ...results.map((r) => r.stackCpuMsPerServiceDeploy.median.toFixed(1)),
              ],
              [
                'PostgreSQL commits per service-deploy (approx.)',
                ...results.map((r) => r.dbCommitsPerServiceDeploy.median.toFixed(1)),
              ],
              [
                'SQL statements per service-deploy',
                ...results.map((r) => r.dbStatementsPerServiceDeploy.median.toFixed(1)),
              ],
              [
                'NATS messages per service-deploy',
                ...results.map((r) => r.natsMessagesPerServiceDeploy.median.toFixed(1)),
              ],
            ],
            notes: [
              SECURITY_NOTE,
              "SQL statements: sent by the services, as each counts them (stageline_db_statements_total; begin and commit not included); NATS messages: in_msgs of the stack's own nats-server (/varz).",
              'noop executor: mirrors and deploys take 0 ms; each service-deploy is a mirror job and a deploy job.',
              'cores: CPU seconds ÷ wall seconds over the round (1.00 = one core busy all the time).',
              ...(ctx.floor
                ? [
                    `floor (same run): throughput ≤ min(commits/s, publishes/s ÷ 2) = ${floorThroughput(ctx.floor).toFixed(0)} ` +
                      `service-deploys/s (one commit and two publishes each, in a row); CPU ≥ ${ctx.floor.serviceDeployCpuMs.toFixed(2)} ms ` +
                      'per service-deploy (their CPU, client + server); 1 commit and 2 NATS messages per service-deploy.',
                  ]
                : []),
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

/** What one commit and two publishes in a row allow: service-deploys per second. */
function floorThroughput(floor: Floor): number {
  return Math.min(floor.commitsPerSecond, floor.publishesPerSecond / 2);
}

/** The targets this scenario measures, against the floor of the same run. */
function throughputTargets(results: readonly ConfigResult[], floor: Floor | undefined): TargetRow[] {
  // Judged from the fewest workers up, whatever order BENCH_THROUGHPUT_WORKERS ran them in.
  const [first, ...more] = [...results].sort((a, b) => a.workers - b.workers);
  if (!first) return [];
  const label = `${first.workers} + ${first.workers}`;
  const rows: TargetRow[] = [
    target({
      figure: `CPU per service-deploy, Stageline + NATS + PostgreSQL (${label} workers)`,
      scenario: 'throughput',
      value: first.stackCpuMsPerServiceDeploy.median,
      unit: 'ms',
      direction: 'max',
      limit: 7,
      digits: 1,
      floor: floor ? `${floor.serviceDeployCpuMs.toFixed(2)} ms (1 commit + 2 publishes)` : '–',
    }),
    target({
      figure: `throughput, service-deploys/s (${label} workers)`,
      scenario: 'throughput',
      value: first.serviceDeploysPerSecond.median,
      unit: '/s',
      direction: 'min',
      limit: 250,
      digits: 1,
      floor: floor ? `≤ ${floorThroughput(floor).toFixed(0)} /s (commits, publishes ÷ 2)` : '–',
    }),
  ];
  for (const r of more) {
    // "Never lowers": the median with more workers is not below the lowest round with one of each.
    const ratio = r.serviceDeploysPerSecond.median / first.serviceDeploysPerSecond.median;
    const lowest = first.serviceDeploysPerSecond.min / first.serviceDeploysPerSecond.median;
    rows.push(
      target({
        figure: `throughput with ${r.workers} + ${r.workers} ÷ ${label} workers (never lower: ≥ ${label}'s lowest round)`,
        scenario: 'throughput',
        value: ratio,
        unit: '',
        direction: 'min',
        limit: lowest,
        shown: `${ratio.toFixed(2)} (${r.serviceDeploysPerSecond.median.toFixed(1)} /s)`,
        floor: `ideal ${r.workers}.00 (if workers were the limit)`,
      }),
    );
  }
  rows.push(
    target({
      figure: `SQL statements per service-deploy (${label} workers)`,
      scenario: 'throughput',
      value: first.dbStatementsPerServiceDeploy.median,
      unit: '',
      direction: 'max',
      limit: 8,
      digits: 1,
      floor: `1 (one commit; this run ${first.dbCommitsPerServiceDeploy.median.toFixed(1)} commits)`,
    }),
    target({
      figure: `NATS messages per service-deploy (${label} workers)`,
      scenario: 'throughput',
      value: first.natsMessagesPerServiceDeploy.median,
      unit: '',
      direction: 'max',
      limit: 20,
      digits: 1,
      floor: '2 (a job and an event)',
    }),
  );
  return rows;
}
