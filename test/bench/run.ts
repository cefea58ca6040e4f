// `npm run bench [-- <scenario>… ] [--reps N] [--scale X] [--profile planner,control] [--no-setup]`
// Runs the benchmark scenarios against real NATS and PostgreSQL (and, for the real-stack ones, the
// registries, buildah and podman), prints one table per scenario and writes every figure, with the
// machine's facts, to test/bench/results/<date>.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolvePostgres } from '@stageline/testkit';
import { measureFloor, SECURITY_NOTE } from './lib/floor.ts';
import { machineFacts } from './lib/machine.ts';
import { startBenchNats } from './lib/nats.ts';
import { profilesIn, renderProfile, summarizeProfile } from './lib/profile.ts';
import { type BenchReport, renderTable } from './lib/report.ts';
import type { Scenario } from './lib/scenario.ts';
import { ROOT, type ServiceName } from './lib/stack.ts';
import { targetsTable } from './lib/targets.ts';
import { auth } from './scenarios/auth.ts';
import { compose } from './scenarios/compose.ts';
import { makespan } from './scenarios/makespan.ts';
import { overhead } from './scenarios/overhead.ts';
import { redeploy } from './scenarios/redeploy.ts';
import { scaling } from './scenarios/scaling.ts';
import { throughput } from './scenarios/throughput.ts';

const SCENARIOS: Scenario[] = [overhead, throughput, makespan, scaling, compose, redeploy, auth];
const ALIASES: Record<string, string> = {
  '1': 'overhead',
  '2': 'throughput',
  '3': 'makespan',
  '4': 'scaling',
  '5': 'compose',
  '6': 'redeploy',
  '7': 'auth',
};

function usage(): never {
  console.error(
    [
      'usage: npm run bench [-- <scenario>…] [--reps N] [--scale X] [--profile planner,control,build,deploy]',
      `scenarios: ${SCENARIOS.map((s, i) => `${i + 1}|${s.name}`).join(', ')} (default: all)`,
      '--reps N     repetitions of each measurement (default per scenario)',
      '--scale X    multiplies every size (default 1; 0.25 for a smoke run, 4 on a large machine)',
      '--profile    run those services with node --cpu-prof (profiles next to their logs)',
      '--no-setup   skip deploy/dev/setup.sh (already done)',
    ].join('\n'),
  );
  process.exit(2);
}

function parseArgs(argv: string[]) {
  const names: string[] = [];
  let reps: number | undefined;
  let scale = 1;
  let profile: ServiceName[] = [];
  let setup = true;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--reps') reps = Number(argv[++i]);
    else if (a === '--scale') scale = Number(argv[++i]);
    else if (a === '--profile') profile = (argv[++i] ?? '').split(',').filter(Boolean) as ServiceName[];
    else if (a === '--no-setup') setup = false;
    else if (a === '--help' || a === '-h') usage();
    else if (a.startsWith('-')) usage();
    else names.push(ALIASES[a] ?? a);
  }
  if (reps !== undefined && !(Number.isInteger(reps) && reps > 0)) usage();
  if (!(scale > 0)) usage();
  if (profile.some((p) => !['control', 'planner', 'build', 'deploy'].includes(p))) usage();
  const chosen = names.length === 0 ? SCENARIOS : names.map((n) => SCENARIOS.find((s) => s.name === n) ?? usage());
  return { chosen, reps, scale, profile, setup };
}

const { chosen, reps, scale, profile, setup } = parseArgs(process.argv.slice(2));
if (setup) {
  // Like demo.sh and test.sh: toolchain, packages, PostgreSQL, NATS, registries and example images first.
  const done = spawnSync('bash', [join(ROOT, 'deploy/dev/setup.sh')], { stdio: 'inherit' });
  if (done.status !== 0) {
    console.error(`bench: deploy/dev/setup.sh failed (${done.status ?? done.signal})`);
    process.exit(1);
  }
}
const started = Date.now();
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const resultsDir = join(ROOT, 'test/bench/results');
const logDir = join(resultsDir, `logs-${stamp}`);
mkdirSync(logDir, { recursive: true });

const machine = await machineFacts((await resolvePostgres()).url);
console.log(
  `stageline bench — ${machine.date}, ${machine.cores} cores (${machine.cpuModel}), ${machine.memoryGiB} GiB, ` +
    `load ${machine.loadAverage.join(' ')}\nnode ${machine.node}, ${machine.nats}, PostgreSQL ${machine.postgres}, ` +
    `${machine.podman}, podman-compose ${machine.podmanCompose}, commit ${machine.commit}\n` +
    `scenarios: ${chosen.map((s) => s.name).join(', ')}; scale ${scale}${reps ? `; reps ${reps}` : ''}; logs ${logDir}`,
);

// The floor every figure is judged against, on a nats-server like the scenarios' own.
const floorNats = await startBenchNats();
const floor = await measureFloor(floorNats.url, floorNats.pid).catch((e: unknown) => {
  console.log(`bench: could not measure the floor: ${e instanceof Error ? e.message : String(e)}`);
  return undefined;
});
await floorNats.stop();
if (floor) {
  console.log(
    `floor: one PostgreSQL commit ${floor.commitMs.toFixed(2)} ms (${floor.commitsPerSecond.toFixed(0)}/s), ` +
      `one JetStream publish ${floor.publishMs.toFixed(2)} ms (${floor.publishesPerSecond.toFixed(0)}/s): ` +
      `a stage transition needs at least ${floor.transitionMs.toFixed(2)} ms; CPU (client + server) ` +
      `${floor.commitCpuMs.toFixed(3)} ms a commit, ${floor.publishCpuMs.toFixed(3)} ms a publish: a service-deploy ` +
      `(one commit, two publishes) at least ${floor.serviceDeployCpuMs.toFixed(2)} ms`,
  );
}
console.log(SECURITY_NOTE);

const report: BenchReport = {
  machine,
  floor,
  security: SECURITY_NOTE,
  options: { scenarios: chosen.map((s) => s.name), reps, scale, profile },
  scenarios: [],
  errors: [],
  totalSeconds: 0,
  targets: [],
};
const file = join(resultsDir, `bench-${stamp}.json`);
const save = () => writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);

for (const scenario of chosen) {
  const t0 = Date.now();
  console.log(`\n>> ${scenario.title}`);
  try {
    const result = await scenario.run({
      logDir,
      reps,
      scale,
      profile,
      floor,
      log: (m) => console.log(`   ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s  ${m}`),
    });
    report.scenarios.push(result);
    report.targets.push(...(result.targets ?? []));
    console.log();
    for (const t of result.tables) console.log(`${renderTable(t)}\n`);
    for (const d of result.diagnosis ?? []) console.log(`   diagnosis: ${d}`);
    for (const f of profilesIn(join(logDir, scenario.name, 'profiles'))) {
      console.log(`${renderProfile(summarizeProfile(f))}\n`);
    }
  } catch (e) {
    const error = e instanceof Error ? (e.stack ?? e.message) : String(e);
    report.errors.push({ scenario: scenario.name, error });
    console.log(`!! ${scenario.name} failed: ${error}`);
  }
  console.log(`   (${scenario.name}: ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  report.totalSeconds = (Date.now() - started) / 1000;
  save();
}

// Where every target stands, beside its floor, for the scenarios that ran.
if (report.targets.length > 0) console.log(`\n${renderTable(targetsTable(report.targets))}`);
console.log(`\nbench: ${report.totalSeconds.toFixed(0)} s in all; figures in ${file}`);
if (report.errors.length > 0) {
  console.log(`bench: ${report.errors.length} scenario(s) failed: ${report.errors.map((e) => e.scenario).join(', ')}`);
  process.exit(1);
}
// Open handles (gRPC channels, timers) must not keep a finished benchmark alive.
process.exit(0);
