// Scenario 6 — unchanged redeploy: the example stack deployed (real executors), then REDEPLOYed with
// nothing changed. How many builds and image copies actually ran (expected: none; every BUILD and
// MIRROR_IMAGE step a cache hit), and how long it took next to the first deploy.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { control } from '@stageline/proto';
import { deployAndWait, orchestrationShare, stepBreakdown } from '../lib/driver.ts';
import { createExampleEnvironment, freshExampleRepo } from '../lib/example.ts';
import { SECURITY_NOTE } from '../lib/floor.ts';
import { measurePodmanFloor } from '../lib/podman-floor.ts';
import { fmtSummary, type ScenarioResult } from '../lib/report.ts';
import type { Scenario } from '../lib/scenario.ts';
import { startStack } from '../lib/stack.ts';
import { median, summarize } from '../lib/stats.ts';
import { target } from '../lib/targets.ts';

const { StepKind, StepOutcome } = control;

/** Steps of a kind, split by whether they did the work or found it done (CACHE_HIT). */
function count(run: control.Deployment, kind: control.StepKind) {
  const steps = run.services.flatMap((s) => s.steps).filter((st) => st.kind === kind);
  const hits = steps.filter((st) => st.outcome === StepOutcome.STEP_OUTCOME_CACHE_HIT).length;
  return { ran: steps.length - hits, cacheHits: hits };
}

/** One row per service and step kind: median ms in the first deploy and in the redeploy. */
function stepRows(
  reps: { firstSteps: Record<string, Record<string, number>>; redeploySteps: Record<string, Record<string, number>> }[],
): string[][] {
  const rows: string[][] = [];
  const services = Object.keys(reps[0]?.firstSteps ?? {});
  for (const service of services) {
    const kinds = new Set([
      ...Object.keys(reps[0]!.firstSteps[service] ?? {}),
      ...Object.keys(reps[0]!.redeploySteps[service] ?? {}),
    ]);
    for (const kind of kinds) {
      const med = (pick: (r: (typeof reps)[number]) => Record<string, Record<string, number>>) =>
        median(reps.map((r) => pick(r)[service]?.[kind] ?? 0)).toFixed(0);
      rows.push([`  ${service}: ${kind} (ms)`, med((r) => r.firstSteps), med((r) => r.redeploySteps)]);
    }
  }
  return rows;
}

/** Where an unchanged REDEPLOY's time went: its longest steps (medians over the repetitions), largest first. */
function slowestSteps(
  reps: { redeploySteps: Record<string, Record<string, number>>; redeployOrchestration: number }[],
  redeployMs: number,
): string {
  const steps = new Map<string, number[]>();
  for (const r of reps) {
    for (const [service, kinds] of Object.entries(r.redeploySteps)) {
      for (const [kind, ms] of Object.entries(kinds)) {
        if (kind.endsWith('_QUEUEING')) continue;
        steps.set(`${service} ${kind}`, [...(steps.get(`${service} ${kind}`) ?? []), ms]);
      }
    }
  }
  const longest = [...steps]
    .map(([name, values]) => [name, median(values)] as const)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5)
    .map(([name, ms]) => `${name} ${ms.toFixed(0)} ms`)
    .join(', ');
  const share = median(reps.map((r) => r.redeployOrchestration)) * 100;
  return (
    `the unchanged REDEPLOY took ${redeployMs.toFixed(0)} ms: its longest work steps ${longest}; no work step ` +
    `running for ${share.toFixed(0)}% of it (orchestration). BUILD and MIRROR_IMAGE steps here are cache hits; a ` +
    'GIT_CLONE fetches the commit and reads its Dockerfile, which the build cache key needs.'
  );
}

export const redeploy: Scenario = {
  name: 'redeploy',
  title: '6. Unchanged redeploy (example stack, real executors)',
  async run(ctx): Promise<ScenarioResult> {
    const reps = ctx.reps ?? 3;
    const work = mkdtempSync(join(tmpdir(), 'stageline-bench-redeploy-'));
    const stack = await startStack({ label: 'redeploy', executor: 'real', logDir: ctx.logDir, profile: ctx.profile });
    try {
      const repetitions = [];
      for (let r = 0; r < reps; r++) {
        const nonce = randomBytes(4).toString('hex');
        const repo = await freshExampleRepo(join(work, nonce), nonce);
        const envId = await createExampleEnvironment(stack, 'bench', `rdp-${nonce}`, repo.gitUrl);
        const first = await deployAndWait(stack, envId, { timeoutMs: 600_000 });
        const again = await deployAndWait(stack, envId, { action: 'redeploy', timeoutMs: 600_000 });
        const podmanFloor = await measurePodmanFloor(envId, again.run, ctx.floor);
        const rep = {
          podmanFloor,
          firstMs: first.seenAt - first.requestedAt,
          redeployMs: again.seenAt - again.requestedAt,
          first: {
            builds: count(first.run, StepKind.STEP_KIND_BUILD),
            mirrors: count(first.run, StepKind.STEP_KIND_MIRROR_IMAGE),
          },
          redeploy: {
            builds: count(again.run, StepKind.STEP_KIND_BUILD),
            mirrors: count(again.run, StepKind.STEP_KIND_MIRROR_IMAGE),
          },
          firstOrchestration: orchestrationShare(first.run),
          redeployOrchestration: orchestrationShare(again.run),
          firstSteps: stepBreakdown(first.run),
          redeploySteps: stepBreakdown(again.run),
          sameVersions: first.run.services.every(
            (s) => again.run.services.find((x) => x.serviceId === s.serviceId)?.version === s.version,
          ),
        };
        repetitions.push(rep);
        ctx.log(
          `redeploy rep ${r + 1}/${reps}: first ${rep.firstMs} ms (${rep.first.builds.ran} build(s)), ` +
            `redeploy ${rep.redeployMs} ms (${rep.redeploy.builds.ran} build(s), ${rep.redeploy.mirrors.ran} mirror copies); ` +
            `floor ${podmanFloor.ms.toFixed(0)} ms`,
        );
      }
      const first = summarize(repetitions.map((x) => x.firstMs));
      const again = summarize(repetitions.map((x) => x.redeployMs));
      const buildsRun = summarize(repetitions.map((x) => x.redeploy.builds.ran));
      const mirrorsRun = summarize(repetitions.map((x) => x.redeploy.mirrors.ran));
      const ratio = summarize(repetitions.map((x) => x.redeployMs / x.firstMs));
      const floorMs = summarize(repetitions.map((x) => x.podmanFloor.ms));
      const inspectMs = summarize(repetitions.map((x) => x.podmanFloor.inspectMs));
      const floorRatio = summarize(repetitions.map((x) => x.podmanFloor.ms / x.firstMs));
      const overFloor = summarize(repetitions.map((x) => x.redeployMs / x.podmanFloor.ms));
      const containers = repetitions[0]?.podmanFloor.containers ?? 0;
      const stages = repetitions[0]?.podmanFloor.stages ?? 0;
      return {
        targets: [
          target({
            figure: 'unchanged REDEPLOY ÷ first DEPLOY (the example, real executors)',
            scenario: 'redeploy',
            value: ratio.median,
            unit: '',
            direction: 'max',
            limit: 0.25,
            shown: `${ratio.median.toFixed(2)} (${again.median.toFixed(0)} ÷ ${first.median.toFixed(0)} ms)`,
            floor: `${floorRatio.median.toFixed(2)} (podman inspect + commits: ${floorMs.median.toFixed(0)} ms)`,
          }),
        ],
        scenario: 'redeploy',
        title: this.title,
        parameters: { reps, example: 'deploy/examples/demo-staging.json with a never-built commit per repetition' },
        figures: {
          floorMs,
          podmanInspectMs: inspectMs,
          floorOverFirst: floorRatio,
          redeployOverFloor: overFloor,
          firstDeployMs: first,
          redeployMs: again,
          redeployBuildsRun: buildsRun,
          redeployMirrorCopies: mirrorsRun,
          redeployOverFirst: ratio,
        },
        repetitions,
        tables: [
          {
            title: `${this.title}, ${reps} repetitions, REAL EXECUTORS`,
            columns: ['', 'first DEPLOY', 'REDEPLOY (unchanged)'],
            rows: [
              ['wall time (request → run finished)', fmtSummary(first, 0, ' ms'), fmtSummary(again, 0, ' ms')],
              [
                'builds run (BUILD steps not CACHE_HIT)',
                fmtSummary(summarize(repetitions.map((x) => x.first.builds.ran))),
                `${fmtSummary(buildsRun)}  (expected 0)`,
              ],
              [
                'image copies (MIRROR_IMAGE not CACHE_HIT)',
                fmtSummary(summarize(repetitions.map((x) => x.first.mirrors.ran))),
                fmtSummary(mirrorsRun),
              ],
              [
                'orchestration share (no work step running)',
                `${(median(repetitions.map((x) => x.firstOrchestration)) * 100).toFixed(1)}%`,
                `${(median(repetitions.map((x) => x.redeployOrchestration)) * 100).toFixed(1)}%`,
              ],
              ...stepRows(repetitions),
              ['REDEPLOY ÷ first DEPLOY (of the same repetition)', '', ratio.median.toFixed(2)],
              [
                `floor: podman inspect of the ${containers} containers + ${stages} × (commit + publish)`,
                '',
                `${fmtSummary(floorMs, 0, ' ms')} (inspect ${inspectMs.median.toFixed(0)} ms)`,
              ],
              ['floor ÷ first DEPLOY', '', floorRatio.median.toFixed(2)],
              ['REDEPLOY ÷ floor', '', overFloor.median.toFixed(1)],
              ['same versions as the first deploy', '', repetitions.every((x) => x.sameVersions) ? 'yes' : 'NO'],
            ],
            notes: [
              'ratios: REDEPLOY against the first DEPLOY of the same environment (the target: ≤ 0.25), and against the floor:',
              "podman's own time to look at the same running containers (`podman container inspect`, one after the other),",
              'plus one PostgreSQL commit and one JetStream publish per stage (measured at the start of the run); an',
              'unchanged REDEPLOY must at least do that (it also probes each container once).',
              SECURITY_NOTE,
            ],
          },
        ],
        diagnosis: [
          ...(buildsRun.max > 0 ? ['an unchanged REDEPLOY ran a build: the cache key changed between runs'] : []),
          ...(ratio.median > 0.25 ? [slowestSteps(repetitions, again.median)] : []),
        ],
      };
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${stack.tail()}`);
    } finally {
      await stack.stop();
      rmSync(work, { recursive: true, force: true });
    }
  },
};
