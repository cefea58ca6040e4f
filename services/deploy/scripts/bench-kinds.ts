// What each kind of service costs to deploy on the local runtime, through the real handler, podman and
// PostgreSQL (issue 5): a first deploy of one service of each kind in a fresh environment, RUNS times each,
// and the median. The image is already in podman's store (pulled once before timing), as it is after the
// first deploy of an environment.
//   source deploy/dev/env.sh && node services/deploy/scripts/bench-kinds.ts [runs]
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { newId, openDatabase } from '@stageline/db';
import { bus, control } from '@stageline/proto';
import { freshDatabase } from '@stageline/testkit';
import { entities } from '../src/adapters/db/entities.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { PgCredentialStore, PgHostPorts, PgReleaseStore } from '../src/adapters/db/release-store.ts';
import { FsChartStore } from '../src/adapters/fs/chart-store.ts';
import { LocalRuntime } from '../src/adapters/podman/local-runtime.ts';
import { Podman } from '../src/adapters/podman/podman.ts';
import { PgManagedDatabases } from '../src/adapters/postgres/managed-databases.ts';
import { pickFreePort } from '../src/adapters/process/free-port.ts';
import { type DeployJobDeps, handleDeployJob } from '../src/app/deploy-job.ts';
import { keyedSerializer } from '../src/app/keyed-serializer.ts';
import { cleanEnvironment, log, recordingContext, runner, secrets } from '../test/support.ts';

const run = promisify(execFile);
const RUNS = Number(process.argv[2] ?? 5);
const EXAMPLE = process.env.EXAMPLE_IMAGE ?? '127.0.0.1:5001/examples/busybox:1.36';
const [REPO = '', TAG = ''] = EXAMPLE.split(/:(?=[^:/]+$)/);
const root = path.resolve(import.meta.dirname, '../../..');

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

const database = await freshDatabase();
const db = await openDatabase({ url: database.url, schema: 'deploy', entities, migrations, log });
const stateDir = await mkdtemp(path.join(os.tmpdir(), 'deploy-bench-kinds-'));
await chmod(stateDir, 0o755);
const managedDir = path.join(stateDir, 'managed-postgres');
const managedPort = await freePort();
await run('bash', [path.join(root, 'deploy/dev/managed-postgres.sh'), 'start', managedDir, String(managedPort)]);
const charts = new FsChartStore(path.join(stateDir, 'charts'), secrets);
const local = new LocalRuntime({
  podman: new Podman({ runner }),
  ports: new PgHostPorts({ db, pickFreePort }),
  charts,
  workDir: path.join(stateDir, 'local'),
  log,
});
const deps: DeployJobDeps = {
  releases: new PgReleaseStore({ db, secrets }),
  charts,
  credentials: new PgCredentialStore({ db, secrets }),
  managed: new PgManagedDatabases({
    adminUrl: `postgres://postgres@127.0.0.1:${managedPort}/postgres`,
    endpoint: { host: 'host.containers.internal', port: managedPort },
  }),
  runtime: (name) => (name === 'local' ? local : undefined),
  serialize: keyedSerializer(),
  fingerprint: (value) => secrets.fingerprint(value),
  now: () => new Date(),
};
await run('podman', ['pull', '-q', EXAMPLE], { env: { ...process.env } });

const container = (ports: control.Port[]) => ({ $case: 'container' as const, value: { image: REPO, tag: TAG, ports } });
const KINDS: Record<string, () => Partial<control.Service>> = {
  CONTAINER: () => ({
    kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
    source: container([{ port: 8080, public: true }]),
    healthCheck: control.HealthCheck.fromPartial({ probe: { $case: 'http', value: { path: '/', port: 8080 } } }),
  }),
  'DATABASE (CONTAINER)': () => ({
    kind: control.ServiceKind.SERVICE_KIND_DATABASE,
    source: { $case: 'database', value: { engine: 1, version: TAG, mode: 1, image: REPO } },
    envVars: [{ key: 'PORT', value: '5432', secret: false }],
  }),
  'DATABASE (MANAGED)': () => ({
    kind: control.ServiceKind.SERVICE_KIND_DATABASE,
    source: { $case: 'database', value: { engine: 1, version: '15', mode: 2, image: '' } },
  }),
  LIFECYCLE_JOB: () => ({
    kind: control.ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
    source: {
      $case: 'job',
      value: control.JobSource.fromPartial({ from: container([]), onDeploy: true, maxDurationSeconds: 60 }),
    },
    envVars: [{ key: 'EXAMPLE_SCRIPT', value: `echo '{"K":"v"}' > /stageline/output/output.json`, secret: false }],
  }),
  'CRON_JOB (schedule)': () => ({
    kind: control.ServiceKind.SERVICE_KIND_CRON_JOB,
    source: { $case: 'job', value: control.JobSource.fromPartial({ from: container([]), schedule: '0 3 * * *' }) },
  }),
};

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const environments: string[] = [];
try {
  for (const [kind, definition] of Object.entries(KINDS)) {
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const environmentId = newId();
      environments.push(environmentId);
      const deploymentId = newId();
      const serviceId = newId();
      const job = bus.DeployJob.fromPartial({
        jobId: `${deploymentId}:${serviceId}:deploy:1`,
        deploymentId,
        environmentId,
        project: 'bench',
        environmentName: 'bench',
        action: control.Action.ACTION_DEPLOY,
        image: EXAMPLE,
        runtime: 'local',
        version: `tag:${TAG}`,
        service: { id: serviceId, environmentId, name: `svc-${i}`, readinessTimeoutSeconds: 60, ...definition() },
      });
      const started = performance.now();
      const result = await handleDeployJob(deps, job, recordingContext({ jobId: job.jobId, deploymentId, serviceId }));
      times.push(performance.now() - started);
      if (!result.succeeded) throw new Error(`${kind}: ${result.message}`);
    }
    const s = times.map((ms) => (ms / 1000).toFixed(2)).join(', ');
    console.log(`${kind.padEnd(22)} ${s}  median ${(median(times) / 1000).toFixed(2)} s`);
  }
} finally {
  for (const env of environments) await cleanEnvironment(env);
  await db.close();
  await database.drop();
  await run('bash', [path.join(root, 'deploy/dev/managed-postgres.sh'), 'stop', managedDir]).catch(() => undefined);
  await rm(stateDir, { recursive: true, force: true });
}
