// Scenario 4 — worker scaling: builds of 200 ms (noop) with 1, 2 and 4 build worker processes and a
// queue deep enough to fill them (more environments than 7-slot processes, each with more than 7
// services to build): builds per second, and the efficiency against the ideal 7 × N / 0.2 s.
import { cpus } from 'node:os';
import { cpuBetween, MACHINE, sampleCpu } from '../lib/cpu.ts';
import { buildSteps, createEnvironment, deployAndWait, getRun, pool, requestRun } from '../lib/driver.ts';
import { fmtSummary, type ScenarioResult } from '../lib/report.ts';
import { type Scenario, scaled } from '../lib/scenario.ts';
import { startStack } from '../lib/stack.ts';
import { maxOverlap, summarize } from '../lib/stats.ts';

const BUILD_MS = 200;
const SLOTS = 7;

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
          reps_.push({
            builds: builds.length,
            windowMs,
            buildsPerSecond: perSecond,
            efficiency: perSecond / ideal,
            maxConcurrentBuilds: maxOverlap(builds),
            meanBuildMs: builds.reduce((a, b) => a + (b.end - b.start), 0) / builds.length,
            cpu: cpuBetween(cpu0, cpu1),
          });
          ctx.log(
            `scaling ${workers} build worker(s) rep ${r + 1}/${reps}: ${perSecond.toFixed(1)} builds/s, ${((perSecond / ideal) * 100).toFixed(0)}% of ${ideal}/s, max ${maxOverlap(builds)} at once`,
          );
        }
        results.push({
          workers,
          ideal: (SLOTS * workers) / (BUILD_MS / 1000),
          buildsPerSecond: summarize(reps_.map((r) => r.buildsPerSecond)),
          efficiency: summarize(reps_.map((r) => r.efficiency)),
          maxConcurrentBuilds: summarize(reps_.map((r) => r.maxConcurrentBuilds)),
          plannerCores: summarize(reps_.map((r) => r.cpu.planner?.cores ?? 0)),
          buildCores: summarize(reps_.map((r) => r.cpu.build?.cores ?? 0)),
          machineCores: summarize(reps_.map((r) => r.cpu[MACHINE]?.cores ?? 0)),
          repetitions: reps_,
        });
      }
      const diagnosis = results
        .filter((r) => r.efficiency.median < 0.8)
        .map(
          (r) =>
            `${r.workers} build process(es): ${(r.efficiency.median * 100).toFixed(0)}% of ${r.ideal} builds/s with at most ` +
            `${r.maxConcurrentBuilds.median} of ${SLOTS * r.workers} slots busy at once; the build processes used ` +
            `${r.buildCores.median.toFixed(2)} cores, the planner ${r.plannerCores.median.toFixed(2)}, the machine ` +
            `${r.machineCores.median.toFixed(2)} of ${cpus().length}: slots wait for the planner, which applies three reports ` +
            'per build and three per deploy before it dispatches the next job.',
        );
      return {
        diagnosis,
        scenario: 'scaling',
        title: this.title,
        parameters: { environments: envCount, servicesPerEnvironment: servicesPerEnv, buildMs: BUILD_MS, reps },
        figures: Object.fromEntries(
          results.map((r) => [
            `${r.workers}`,
            { buildsPerSecond: r.buildsPerSecond, efficiency: r.efficiency, ideal: r.ideal },
          ]),
        ),
        repetitions: results,
        tables: [
          {
            title: `${this.title}: ${envCount} environments × ${servicesPerEnv} services at once, ${reps} rounds, NOOP EXECUTOR`,
            columns: [
              'build processes',
              'builds / s',
              'ideal 7×N/0.2 s',
              'efficiency',
              'max builds at once',
              'planner cores',
              'build cores',
              'machine cores (all processes)',
            ],
            rows: results.map((r) => [
              r.workers,
              fmtSummary(r.buildsPerSecond, 1),
              r.ideal,
              `${(r.efficiency.median * 100).toFixed(0)}%`,
              fmtSummary(r.maxConcurrentBuilds),
              r.plannerCores.median.toFixed(2),
              r.buildCores.median.toFixed(2),
              r.machineCores.median.toFixed(2),
            ]),
            notes: [
              'builds / s: build (mirror) steps finished ÷ first build start → last build end, over all runs of a round.',
              `noop executor: each mirror job sleeps ${BUILD_MS} ms; deploys take 0 ms.`,
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
