// Scenario 4 — worker scaling: builds of 200 ms (noop) with 1, 2 and 4 build worker processes and a
// queue deep enough to fill them (more environments than 7-slot processes, each with more than 7
// services to build): builds per second, and the efficiency against the ideal 7 × N / 0.2 s.
import { cpus } from 'node:os';
import { cpuBetween, MACHINE, sampleCpu } from '../lib/cpu.ts';
import { buildSteps, createEnvironment, deployAndWait, getRun, pool, requestRun } from '../lib/driver.ts';
import { SECURITY_NOTE } from '../lib/floor.ts';
import { fmtSummary, type ScenarioResult } from '../lib/report.ts';
import { type Scenario, scaled } from '../lib/scenario.ts';
import { startStack } from '../lib/stack.ts';
import { maxOverlap, type Summary, summarize } from '../lib/stats.ts';
import { target } from '../lib/targets.ts';

const BUILD_MS = 200;
const SLOTS = 7;
const cores = cpus().length;

/** What CPU per service counts: Stageline's processes, NATS and PostgreSQL. */
const STACK = ['control', 'planner', 'build', 'deploy', 'nats-server', 'postgres'];

interface Measured {
  ideal: number;
  efficiency: Summary;
  buildsPerSecond: Summary;
  plannerCores: Summary;
  machineCores: Summary;
  othersCores: Summary;
  plannerBound: number;
  machineBound: number;
}

/** What limited a configuration, from its own figures. */
function limitOf(r: Measured): string {
  if (r.efficiency.median >= 0.9) return 'the slots (the bound)';
  // The planner is one process: a core of its own busy is its limit, whatever the rest of the machine does.
  if (r.plannerCores.median >= 0.85) return `the planner's core (${r.plannerCores.median.toFixed(2)} busy)`;
  if (r.machineCores.median >= 0.9 * cores) {
    return `the machine's cores (${r.machineCores.median.toFixed(2)} of ${cores} busy, ${r.othersCores.median.toFixed(2)} others')`;
  }
  const cpuBound = Math.min(r.plannerBound, r.machineBound);
  if (r.buildsPerSecond.median >= 0.8 * cpuBound) {
    return r.plannerBound <= r.machineBound ? "the planner's CPU per build" : "the stack's CPU per build";
  }
  return 'turnaround (no CPU saturated): slots wait for the next job';
}

export const scaling: Scenario = {
  name: 'scaling',
  title: '4. Build worker scaling (noop builds of 200 ms)',
  async run(ctx): Promise<ScenarioResult> {
    const workerCounts = [1, 2, 4];
    // Each run builds at most 7 at once: 4 processes × 7 slots need at least 4 runs in flight; twice
    // that keeps the queue full while runs finish and start.
    const envCount = scaled(8, ctx.scale, 4);
    const servicesPerEnv = scaled(14, ctx.scale, 8);
    const reps = ctx.reps ?? 3;
    const stack = await startStack({
      label: 'scaling',
      executor: 'noop',
      noop: { ms: 0, mirrorMs: BUILD_MS, buildMs: BUILD_MS },
      logDir: ctx.logDir,
      profile: ctx.profile,
    });
    try {
      const envs = await pool(
        Array.from({ length: envCount }, (_, e) => e),
        8,
        (e) =>
          createEnvironment(stack, {
            project: 'bench',
            name: `sc-${e}`,
            stages: 1,
            // Stage 2 (DEFAULT CONTAINER) holds them all; the other default stages are empty.
            services: Array.from({ length: servicesPerEnv }, (_, i) => ({ name: `svc-${i}`, stage: 2 })),
          }),
      );
      await deployAndWait(stack, envs[0]!.id);

      const results = [];
      for (const workers of workerCounts) {
        while (stack.procs.filter((p) => p.name === 'build').length < workers) await stack.spawnWorker('build');
        const reps_ = [];
        for (let r = 0; r < reps; r++) {
          const cpu0 = sampleCpu(stack.cpuTargets());
          const requested = await pool(envs, 16, (env) => requestRun(stack, env.id));
          await Promise.all(requested.map((q) => stack.runs.wait(q.id, 600_000)));
          const cpu1 = sampleCpu(stack.cpuTargets());
          const runs = await pool(requested, 8, (q) => getRun(stack, q.id));
          const failed = runs.filter((run) => run.status !== 4);
          if (failed.length > 0) throw new Error(`${failed.length} runs did not succeed: ${failed[0]!.message}`);
          const builds = runs.flatMap((run) => buildSteps(run));
          const windowMs = Math.max(...builds.map((b) => b.end)) - Math.min(...builds.map((b) => b.start));
          const perSecond = builds.length / (windowMs / 1000);
          const ideal = (SLOTS * workers) / (BUILD_MS / 1000);
          const cpu = cpuBetween(cpu0, cpu1);
          const stackSeconds = STACK.reduce((sum, n) => sum + (cpu[n]?.seconds ?? 0), 0);
          const busyMs = builds.reduce((a, b) => a + (b.end - b.start), 0);
          reps_.push({
            builds: builds.length,
            windowMs,
            // Requests sent → last run finished: the build window plus planning before and deploys after.
            roundMs: cpu1.at - cpu0.at,
            buildsPerSecond: perSecond,
            efficiency: perSecond / ideal,
            maxConcurrentBuilds: maxOverlap(builds),
            meanBuildMs: busyMs / builds.length,
            // Slot time not spent building, per build: what a slot waits between two jobs (report applied,
            // next job dispatched and taken), plus the ramp at the start and the end of the window.
            idleSlotMsPerBuild: (SLOTS * workers * windowMs - busyMs) / builds.length,
            // CPU per service (its build and its 0 ms deploy), and the rates it allows: the planner is one
            // process (one core at most), the stack shares the machine's cores with whatever else runs.
            plannerMsPerService: ((cpu.planner?.seconds ?? 0) * 1000) / builds.length,
            stackMsPerService: (stackSeconds * 1000) / builds.length,
            // Other work on the machine (not the stack, not the benchmark): cores the stack could not have.
            othersCores: Math.max(
              0,
              (cpu[MACHINE]?.cores ?? 0) - [...STACK, 'bench'].reduce((sum, n) => sum + (cpu[n]?.cores ?? 0), 0),
            ),
            cpu,
          });
          ctx.log(
            `scaling ${workers} build worker(s) rep ${r + 1}/${reps}: ${perSecond.toFixed(1)} builds/s, ${((perSecond / ideal) * 100).toFixed(0)}% of ${ideal}/s, max ${maxOverlap(builds)} at once`,
          );
        }
        const plannerMs = summarize(reps_.map((r) => r.plannerMsPerService));
        const stackMs = summarize(reps_.map((r) => r.stackMsPerService));
        const machineCores = summarize(reps_.map((r) => r.cpu[MACHINE]?.cores ?? 0));
        const othersCores = summarize(reps_.map((r) => r.othersCores));
        const result = {
          workers,
          ideal: (SLOTS * workers) / (BUILD_MS / 1000),
          buildsPerSecond: summarize(reps_.map((r) => r.buildsPerSecond)),
          efficiency: summarize(reps_.map((r) => r.efficiency)),
          maxConcurrentBuilds: summarize(reps_.map((r) => r.maxConcurrentBuilds)),
          idleSlotMsPerBuild: summarize(reps_.map((r) => r.idleSlotMsPerBuild)),
          plannerCores: summarize(reps_.map((r) => r.cpu.planner?.cores ?? 0)),
          buildCores: summarize(reps_.map((r) => r.cpu.build?.cores ?? 0)),
          machineCores,
          othersCores,
          plannerMsPerService: plannerMs,
          stackMsPerService: stackMs,
          // What CPU alone would allow: the planner's one core, and the cores the machine had left for the stack.
          plannerBound: 1000 / plannerMs.median,
          machineBound: (1000 * Math.max(0.1, cores - othersCores.median)) / stackMs.median,
          repetitions: reps_,
        };
        results.push({ ...result, limit: limitOf(result) });
      }
      const diagnosis = results.map((r) => {
        const first = r.repetitions[0];
        const busiest = first
          ? [...STACK, 'bench']
              .map((n) => [n, first.cpu[n]?.cores ?? 0] as const)
              .sort((a, b) => b[1] - a[1])
              .map(([n, c]) => `${n} ${c.toFixed(2)}`)
              .join(', ')
          : '';
        const waves = (first?.builds ?? 0) / (SLOTS * r.workers);
        return (
          `${r.workers} build process(es): ${(r.efficiency.median * 100).toFixed(0)}% of the bound ${r.ideal} builds/s ` +
          `(${r.buildsPerSecond.median.toFixed(1)} builds/s, at most ${r.maxConcurrentBuilds.median} of ${SLOTS * r.workers} slots ` +
          `busy at once, slots idle ${r.idleSlotMsPerBuild.median.toFixed(0)} ms per ${BUILD_MS} ms build, ${waves.toFixed(1)} waves ` +
          `of builds in the window${waves < 8 ? ', so its two ramps weigh' : ''}; the round took ${((first?.roundMs ?? 0) / 1000).toFixed(1)} s, ` +
          `its builds ${((first?.windowMs ?? 0) / 1000).toFixed(1)} s of it); CPU per service (build + deploy, a round's CPU ÷ its builds): ` +
          `planner ${r.plannerMsPerService.median.toFixed(1)} ms, stack ${r.stackMsPerService.median.toFixed(1)} ms → in a steady ` +
          `stream the planner's core allows ${r.plannerBound.toFixed(0)} builds/s, the cores other work left to the stack ` +
          `${r.machineBound.toFixed(0)}; cores by process: ${busiest}, machine ${r.machineCores.median.toFixed(2)} of ${cores}; ` +
          `limited by ${r.limit}.`
        );
      });
      const four = results.find((r) => r.workers === 4) ?? results.at(-1)!;
      return {
        diagnosis,
        targets: [
          target({
            figure: `build worker efficiency at ${four.workers} processes (builds/s ÷ 7 × ${four.workers} ÷ 0.2 s)`,
            scenario: 'scaling',
            value: four.efficiency.median * 100,
            unit: '%',
            direction: 'min',
            limit: 90,
            digits: 0,
            floor: `100% = ${four.ideal} builds/s; CPU allows ${Math.min(four.plannerBound, four.machineBound).toFixed(0)}/s`,
          }),
        ],
        scenario: 'scaling',
        title: this.title,
        parameters: { environments: envCount, servicesPerEnvironment: servicesPerEnv, buildMs: BUILD_MS, reps },
        figures: Object.fromEntries(
          results.map((r) => [
            `${r.workers}`,
            {
              buildsPerSecond: r.buildsPerSecond,
              efficiency: r.efficiency,
              ideal: r.ideal,
              idleSlotMsPerBuild: r.idleSlotMsPerBuild,
              plannerMsPerService: r.plannerMsPerService,
              stackMsPerService: r.stackMsPerService,
              plannerBoundBuildsPerSecond: r.plannerBound,
              machineBoundBuildsPerSecond: r.machineBound,
              othersCores: r.othersCores,
              limitedBy: r.limit,
            },
          ]),
        ),
        repetitions: results,
        tables: [
          {
            title: `${this.title}: ${envCount} environments × ${servicesPerEnv} services at once, ${reps} rounds, NOOP EXECUTOR`,
            columns: [
              'build processes',
              'builds / s',
              'bound 7×N÷0.2 s',
              'efficiency',
              'most at once',
              'slot idle per build',
              'planner cores',
              'machine cores (others)',
              'CPU allows: planner / machine',
              'limited by',
            ],
            rows: results.map((r) => [
              r.workers,
              fmtSummary(r.buildsPerSecond, 1),
              r.ideal,
              `${(r.efficiency.median * 100).toFixed(0)}%`,
              `${r.maxConcurrentBuilds.median} of ${SLOTS * r.workers}`,
              `${r.idleSlotMsPerBuild.median.toFixed(0)} ms`,
              r.plannerCores.median.toFixed(2),
              `${r.machineCores.median.toFixed(2)} (${r.othersCores.median.toFixed(2)})`,
              `${r.plannerBound.toFixed(0)} / ${r.machineBound.toFixed(0)} /s`,
              r.limit,
            ]),
            notes: [
              'builds / s: build (mirror) steps finished ÷ first build start → last build end, over all runs of a round.',
              `bound: every slot building all the time (7 slots a process, ${BUILD_MS} ms a build); efficiency = builds/s ÷ bound.`,
              `slot idle per build: (slots × window − build time) ÷ builds: a slot's wait between jobs, plus the window's ramps.`,
              "CPU allows (a steady stream): 1 core ÷ the planner's CPU per service (one process); the cores other work left ÷",
              `the stack's (Stageline + NATS + PostgreSQL) CPU per service; CPU per service = a round's CPU ÷ its builds (a`,
              `short window can beat it: some of a run's work falls outside). Machine: ${cores} cores; others = machine − stack − bench.`,
              `noop executor: each mirror job sleeps ${BUILD_MS} ms; deploys take 0 ms.`,
              SECURITY_NOTE,
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
