// Scenario 5 — the real stack against podman-compose: the example (an application built from a local git
// repository, a worker and a public web container) deployed by Stageline with its real executors (git,
// buildah, the mirror registry, podman) and by `podman-compose up -d --build` from an equivalent compose
// file, cold (a commit never built before, a new environment / project) and warm (the same again,
// unchanged), side by side in the same run.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { control } from '@stageline/proto';
import { freePort } from '@stageline/testkit';
import { buildSteps, deployAndWait, deploySteps, orchestrationShare, stepBreakdown } from '../lib/driver.ts';
import { composeFile, createExampleEnvironment, freshExampleRepo, httpServices } from '../lib/example.ts';
import { SECURITY_NOTE } from '../lib/floor.ts';
import { measurePodmanFloor, type PodmanFloor } from '../lib/podman-floor.ts';
import { fmtSummary, type ScenarioResult } from '../lib/report.ts';
import type { Scenario } from '../lib/scenario.ts';
import { startStack } from '../lib/stack.ts';
import { median, summarize } from '../lib/stats.ts';
import { target } from '../lib/targets.ts';

const run = promisify(execFile);

/** Resolves once every URL answers 200, polling every 100 ms. */
async function waitForHttp(urls: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const url of urls) {
    for (;;) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        if (res.ok) break;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function podmanComposeAvailable(): Promise<boolean> {
  try {
    await run('podman-compose', ['--version']);
    return true;
  } catch {
    return false;
  }
}

interface StepTotals {
  buildMs: number;
  deployMs: number;
}

interface ComposeRep {
  stagelineColdMs: number;
  stagelineWarmMs: number;
  composeColdMs: number;
  composeWarmMs: number;
  stagelineColdBuildsRun: number;
  stagelineWarmBuildsRun: number;
  stagelineColdSteps: StepTotals;
  stagelineWarmSteps: StepTotals;
  stagelineColdOrchestration: number;
  stagelineWarmOrchestration: number;
  stagelineColdByService: Record<string, Record<string, number>>;
  stagelineWarmByService: Record<string, Record<string, number>>;
  /** Warm's floor: podman's look at the same running containers, a commit and a publish per stage. */
  warmFloor: PodmanFloor;
}

interface ComposeProject {
  name: string;
  file: string;
  ports: Record<string, number>;
}

async function composeUp(project: ComposeProject): Promise<number> {
  const started = Date.now();
  await run('podman-compose', ['-p', project.name, '-f', project.file, 'up', '-d', '--build'], {
    maxBuffer: 64 * 1024 * 1024,
  });
  // `up -d` returns once containers are started; the stack is up when its HTTP services answer.
  await waitForHttp(
    Object.values(project.ports).map((p) => `http://127.0.0.1:${p}/`),
    120_000,
  );
  return Date.now() - started;
}

async function composeDown(project: ComposeProject): Promise<void> {
  await run('podman-compose', ['-p', project.name, '-f', project.file, 'down', '-t', '0']).catch(() => undefined);
  // What 1.0.3's down leaves: the project's network and the image it built.
  await run('podman', ['network', 'rm', '-f', `${project.name}_default`]).catch(() => undefined);
  await run('podman', ['rmi', '-f', `${project.name}_api`]).catch(() => undefined);
}

export const compose: Scenario = {
  name: 'compose',
  title: '5. Real stack: Stageline vs podman-compose (example stack, cold and warm)',
  async run(ctx): Promise<ScenarioResult> {
    if (!(await podmanComposeAvailable())) {
      throw new Error('podman-compose is not installed (setup.sh installs it: apt-get install podman-compose)');
    }
    const reps = ctx.reps ?? 3;
    const work = mkdtempSync(join(tmpdir(), 'stageline-bench-compose-'));
    const stack = await startStack({ label: 'compose', executor: 'real', logDir: ctx.logDir, profile: ctx.profile });
    const projects: ComposeProject[] = [];
    try {
      const repetitions: ComposeRep[] = [];
      for (let r = 0; r < reps; r++) {
        // Two different never-built commits: neither side may find the other's layers in the cache.
        const nonceS = randomBytes(4).toString('hex');
        const nonceC = randomBytes(4).toString('hex');
        const repoS = await freshExampleRepo(join(work, `s-${nonceS}`), nonceS);
        const repoC = await freshExampleRepo(join(work, `c-${nonceC}`), nonceC);

        const envId = await createExampleEnvironment(stack, 'bench', `cmp-${nonceS}`, repoS.gitUrl);
        const cold = await deployAndWait(stack, envId, { timeoutMs: 600_000 });
        const warm = await deployAndWait(stack, envId, { timeoutMs: 600_000 });
        const warmFloor = await measurePodmanFloor(envId, warm.run, ctx.floor);
        const stagelineCold = cold.seenAt - cold.requestedAt;
        const stagelineWarm = warm.seenAt - warm.requestedAt;
        const built = (run: control.Deployment) =>
          buildSteps(run).length -
          run.services.flatMap((s) => s.steps).filter((st) => st.outcome === control.StepOutcome.STEP_OUTCOME_CACHE_HIT)
            .length;
        ctx.log(`compose rep ${r + 1}/${reps}: Stageline cold ${stagelineCold} ms, warm ${stagelineWarm} ms`);

        const ports: Record<string, number> = {};
        for (const name of httpServices()) ports[name] = await freePort();
        const dir = join(work, `compose-${nonceC}`);
        mkdirSync(dir, { recursive: true });
        const file = join(dir, 'compose.yaml');
        writeFileSync(file, composeFile(repoC.checkout, ports));
        const project = { name: `slbench${nonceC}`, file, ports };
        projects.push(project);
        const composeCold = await composeUp(project);
        const composeWarm = await composeUp(project);
        ctx.log(`compose rep ${r + 1}/${reps}: podman-compose cold ${composeCold} ms, warm ${composeWarm} ms`);
        await composeDown(project);

        const stepTotals = (run: control.Deployment): StepTotals => ({
          buildMs: buildSteps(run).reduce((a, s) => a + (s.end - s.start), 0),
          deployMs: deploySteps(run).reduce((a, s) => a + (s.end - s.start), 0),
        });
        repetitions.push({
          stagelineColdMs: stagelineCold,
          stagelineWarmMs: stagelineWarm,
          composeColdMs: composeCold,
          composeWarmMs: composeWarm,
          stagelineColdBuildsRun: built(cold.run),
          stagelineWarmBuildsRun: built(warm.run),
          stagelineColdSteps: stepTotals(cold.run),
          stagelineWarmSteps: stepTotals(warm.run),
          stagelineColdOrchestration: orchestrationShare(cold.run),
          stagelineWarmOrchestration: orchestrationShare(warm.run),
          stagelineColdByService: stepBreakdown(cold.run),
          stagelineWarmByService: stepBreakdown(warm.run),
          warmFloor,
        });
      }
      const f = (k: 'stagelineColdMs' | 'stagelineWarmMs' | 'composeColdMs' | 'composeWarmMs') =>
        summarize(repetitions.map((x) => x[k]));
      const sc = f('stagelineColdMs');
      const sw = f('stagelineWarmMs');
      const cc = f('composeColdMs');
      const cw = f('composeWarmMs');
      const warmFloor = summarize(repetitions.map((x) => x.warmFloor.ms));
      const warmFloorRatio = warmFloor.median / cw.median;
      // Cold's floor: the run's own work (clone, build, copies, deploys) with no orchestration between.
      const coldShare = median(repetitions.map((x) => x.stagelineColdOrchestration));
      const coldWork = sc.median * (1 - coldShare);
      const containers = repetitions[0]?.warmFloor.containers ?? 0;
      const stages = repetitions[0]?.warmFloor.stages ?? 0;
      return {
        targets: [
          target({
            figure: 'Stageline ÷ podman-compose, warm (an unchanged DEPLOY of the example)',
            scenario: 'compose',
            value: sw.median / cw.median,
            unit: '',
            direction: 'max',
            limit: 0.2,
            shown: `${(sw.median / cw.median).toFixed(2)} (${sw.median.toFixed(0)} ÷ ${cw.median.toFixed(0)} ms)`,
            floor: `${warmFloorRatio.toFixed(2)} (podman inspect + commits: ${warmFloor.median.toFixed(0)} ms)`,
          }),
        ],
        scenario: 'compose',
        title: this.title,
        parameters: {
          reps,
          example: 'deploy/examples/demo-staging.json (api: APPLICATION from git; worker, web: busybox containers)',
          cold: 'a commit never built (fresh repository copy), a new environment / compose project',
          warm: 'the same request again, nothing changed',
          composeCommand: 'podman-compose -p <project> -f compose.yaml up -d --build, then every HTTP service answers',
        },
        figures: {
          stagelineColdMs: sc,
          stagelineWarmMs: sw,
          composeColdMs: cc,
          composeWarmMs: cw,
          warmFloorMs: warmFloor,
          warmFloorOverCompose: warmFloorRatio,
          coldWorkMs: coldWork,
        },
        repetitions,
        tables: [
          {
            title: `${this.title}, ${reps} repetitions, REAL EXECUTORS`,
            columns: ['', 'Stageline', 'podman-compose', 'Stageline ÷ compose', 'floor', 'Stageline ÷ floor'],
            rows: [
              [
                'cold (never-built commit)',
                fmtSummary(sc, 0, ' ms'),
                fmtSummary(cc, 0, ' ms'),
                (sc.median / cc.median).toFixed(2),
                `${coldWork.toFixed(0)} ms (its own work)`,
                (sc.median / coldWork).toFixed(2),
              ],
              [
                'warm (unchanged)',
                fmtSummary(sw, 0, ' ms'),
                fmtSummary(cw, 0, ' ms'),
                (sw.median / cw.median).toFixed(2),
                `${warmFloor.median.toFixed(0)} ms (${warmFloorRatio.toFixed(2)} of compose)`,
                (sw.median / warmFloor.median).toFixed(1),
              ],
              [
                'Stageline orchestration share cold / warm',
                `${(median(repetitions.map((x) => x.stagelineColdOrchestration)) * 100).toFixed(1)}% / ${(median(repetitions.map((x) => x.stagelineWarmOrchestration)) * 100).toFixed(1)}%`,
                '',
                '',
                '',
                '',
              ],
            ],
            notes: [
              'Stageline ÷ compose: against podman-compose of the same run (the target, warm: ≤ 0.2). Floors of the same run:',
              "cold, Stageline's own work steps (clone, buildah, image copies, podman deploys) with no orchestration between",
              `(the run × (1 − orchestration share)); warm, podman's own look at the same ${containers} running containers`,
              `(\`podman container inspect\`, one after the other) + ${stages} × (one commit + one publish): what an unchanged deploy does at least.`,
              'Stageline: DeployEnvironment → run SUCCEEDED (its deploys end when its readiness probes pass).',
              'podman-compose 1.0.3 (Debian): `up -d --build` → every HTTP service answers 200; it sleeps 1 s after each',
              'podman command it runs and, warm, re-runs nothing (containers exist); Stageline, warm, finds every release unchanged and leaves its pods alone.',
              'Base images are in local storage for both (shared machine storage is never wiped).',
              SECURITY_NOTE,
            ],
          },
        ],
      };
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${stack.tail()}`);
    } finally {
      for (const p of projects) await composeDown(p);
      await stack.stop();
      rmSync(work, { recursive: true, force: true });
    }
  },
};
