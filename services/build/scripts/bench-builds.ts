// Build throughput: N build worker processes (services/build/src/main.ts, 7 slots each) on one durable
// consumer, fed a batch of small GIT builds straight on the bus (each of its own run, so no per-run
// limit applies), each with a different ARG value so every one is a real buildah build and push.
// Prints builds per minute from the first job published to the last result.
//
//   node services/build/scripts/bench-builds.ts [--workers 1] [--builds 28]
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bus, decodeJobEvents } from '@stageline/bus';
import { createLogger } from '@stageline/log';
import { bus as busv1, control } from '@stageline/proto';
import { dropBusPrefix, freshBusPrefix, freshDatabase, resolveNats, resolveRegistry } from '@stageline/testkit';

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const WORKERS = flag('workers', 1);
const BUILDS = flag('builds', 28);
const entry = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const example = process.env.EXAMPLE_IMAGE ?? '127.0.0.1:5001/examples/busybox:1.36';
const log = createLogger({ service: 'bench', level: 'silent' });

const nats = await resolveNats();
const database = await freshDatabase();
const prefix = freshBusPrefix();
const mirror = new URL((await resolveRegistry()).url).host;
const scratch = mkdtempSync(join(tmpdir(), 'stageline-bench-'));
const runId = randomBytes(4).toString('hex');

// One repository; the ARG makes each job's RUN step (and image) its own.
const repo = join(scratch, 'bench.git');
const work = join(scratch, 'work');
const gitEnv = {
  ...process.env,
  GIT_AUTHOR_NAME: 'b',
  GIT_AUTHOR_EMAIL: 'b@b',
  GIT_COMMITTER_NAME: 'b',
  GIT_COMMITTER_EMAIL: 'b@b',
};
execFileSync('git', ['init', '-q', '--bare', '--initial-branch=main', repo]);
execFileSync('git', ['init', '-q', '--initial-branch=main', work]);
writeFileSync(
  join(work, 'Dockerfile'),
  `FROM ${example}\nLABEL bench.run=${runId}\nARG N\nRUN echo "build $N" > /www/n.txt\n`,
);
for (const a of [
  ['add', '-A'],
  ['commit', '-qm', 'bench'],
  ['push', '-q', repo, 'HEAD:refs/heads/main'],
]) {
  execFileSync('git', a, { cwd: work, env: gitEnv });
}

const workers: ChildProcess[] = [];
const env = {
  ...process.env,
  NATS_URL: nats.url,
  DATABASE_URL: database.url,
  STAGELINE_BUS_PREFIX: prefix,
  MIRROR_REGISTRY: mirror,
  GRPC_LISTEN: '127.0.0.1:0',
  LOG_LEVEL: 'info',
  BUILD_WORK_DIR: join(scratch, 'builds'),
};
for (let i = 0; i < WORKERS; i++) {
  const child = spawn(process.execPath, [entry], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  workers.push(child);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('"msg":"worker consuming"')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
  });
}

const conn = await Bus.connect({ url: nats.url, prefix, name: 'bench', log });
await conn.ensureStreams();
const finished = new Map<string, { at: number; ok: boolean; message: string; cacheHit: boolean }>();
let inFlight = 0;
let peak = 0;
const done = new Promise<void>((resolve) => {
  conn.nc.subscribe(`${prefix}.results.build.>`, {
    callback: (_err, msg) => {
      // A message may carry several of a job's events (JobEvent.earlier): each, in order.
      for (const event of decodeJobEvents(msg.data)) {
        const e = event.event;
        if (e?.$case === 'stepStarted' && e.value.kind === control.StepKind.STEP_KIND_BUILD)
          peak = Math.max(peak, ++inFlight);
        if (e?.$case === 'jobFinished' && !finished.has(event.jobId)) {
          inFlight--;
          finished.set(event.jobId, {
            at: Date.now(),
            ok: e.value.succeeded,
            message: e.value.message,
            cacheHit: e.value.message.startsWith('cache hit'),
          });
          if (finished.size === BUILDS) resolve();
        }
      }
    },
  });
});

const started = Date.now();
for (let i = 0; i < BUILDS; i++) {
  const deploymentId = `bench-${runId}-${i}`;
  const job = busv1.BuildJob.fromPartial({
    jobId: `${deploymentId}:svc:build:1`,
    deploymentId,
    environmentId: 'bench',
    project: `bench-${runId}`,
    environmentName: 'bench',
    kind: busv1.BuildKind.BUILD_KIND_GIT,
    attempt: 1,
    service: {
      id: `svc-${i}`,
      name: `svc-${i}`,
      kind: control.ServiceKind.SERVICE_KIND_APPLICATION,
      source: {
        $case: 'application',
        value: { gitUrl: `file://${repo}`, branch: 'main', dockerfilePath: 'Dockerfile' },
      },
      buildResources: { cpuMillis: 1000, memoryMib: 512 },
      envVars: [{ key: 'N', value: `${runId}-${i}`, secret: false }],
    },
  });
  await conn.publish(conn.subjects.buildJobs(deploymentId), busv1.BuildJob.encode(job).finish(), { msgId: job.jobId });
}
await done;
const elapsed = (Math.max(...[...finished.values()].map((f) => f.at)) - started) / 1000;
const failures = [...finished.values()].filter((f) => !f.ok);
const hits = [...finished.values()].filter((f) => f.cacheHit).length;
console.log(
  `${WORKERS} worker process(es), ${BUILDS} builds: ${elapsed.toFixed(1)} s, ` +
    `${((BUILDS / elapsed) * 60).toFixed(1)} builds/min, peak ${peak} builds in flight, ` +
    `${failures.length} failed, ${hits} cache hits`,
);
for (const f of failures.slice(0, 3)) console.log(`  failed: ${f.message}`);

for (const w of workers) w.kill('SIGTERM');
await Promise.all(workers.map((w) => new Promise((r) => (w.exitCode === null ? w.once('exit', r) : r(null)))));
await conn.close();
await dropBusPrefix(nats.url, prefix);
await database.drop();
rmSync(scratch, { recursive: true, force: true });
