// How long one local deploy of the busybox httpd test image takes, through the real handler, podman and
// PostgreSQL: 5 first deploys (fresh environment: network, pod, readiness) and 5 redeploys (changed env
// var: kube play --replace of a running pod). Prints each, and the medians.
//   node services/deploy/scripts/bench-local-deploy.ts
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { newId, openDatabase } from '@stageline/db';
import { bus, control } from '@stageline/proto';
import { freshDatabase } from '@stageline/testkit';
import { entities } from '../src/adapters/db/entities.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { PgCredentialStore, PgHostPorts, PgReleaseStore } from '../src/adapters/db/release-store.ts';
import { FsChartStore } from '../src/adapters/fs/chart-store.ts';
import { LocalRuntime } from '../src/adapters/podman/local-runtime.ts';
import { Podman } from '../src/adapters/podman/podman.ts';
import { pickFreePort } from '../src/adapters/process/free-port.ts';
import { handleDeployJob } from '../src/app/deploy-job.ts';
import { keyedSerializer } from '../src/app/keyed-serializer.ts';
import { cleanEnvironment, log, recordingContext, runner, secrets, testImage } from '../test/support.ts';

const RUNS = 5;
const database = await freshDatabase();
const db = await openDatabase({ url: database.url, schema: 'deploy', entities, migrations, log });
const stateDir = await mkdtemp(path.join(os.tmpdir(), 'deploy-bench-'));
const charts = new FsChartStore(path.join(stateDir, 'charts'), secrets);
const local = new LocalRuntime({
  podman: new Podman({ runner }),
  ports: new PgHostPorts({ db, pickFreePort }),
  charts,
  workDir: path.join(stateDir, 'local'),
  log,
});
const deps = {
  releases: new PgReleaseStore({ db, secrets }),
  charts,
  credentials: new PgCredentialStore({ db, secrets }),
  runtime: (name: string) => (name === 'local' ? local : undefined),
  serialize: keyedSerializer(),
  fingerprint: (value) => secrets.fingerprint(value),
  now: () => new Date(),
};
const image = await testImage();

async function deployOnce(environmentId: string, serviceId: string, greeting: string): Promise<number> {
  const deploymentId = newId();
  const job = bus.DeployJob.fromPartial({
    jobId: `${deploymentId}:${serviceId}:deploy:1`,
    deploymentId,
    environmentId,
    project: 'bench',
    environmentName: 'bench',
    action: control.Action.ACTION_DEPLOY,
    image,
    runtime: 'local',
    service: {
      id: serviceId,
      environmentId,
      name: 'web',
      kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
      source: { $case: 'container', value: { image: 'x', tag: '1', ports: [{ port: 8080, public: true }] } },
      envVars: [{ key: 'GREETING', value: greeting, secret: false }],
    },
  });
  const started = performance.now();
  const result = await handleDeployJob(deps, job, recordingContext({ jobId: job.jobId, deploymentId, serviceId }));
  const ms = performance.now() - started;
  if (!result.succeeded) throw new Error(result.message);
  const body = await (await fetch(result.endpoints[0]!.url)).text();
  if (body.trim() !== greeting) throw new Error(`unexpected body ${body}`);
  return ms;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const first: number[] = [];
const again: number[] = [];
const environments: string[] = [];
try {
  for (let i = 0; i < RUNS; i++) {
    const env = newId();
    environments.push(env);
    const serviceId = newId();
    first.push(await deployOnce(env, serviceId, `first ${i}`));
    again.push(await deployOnce(env, serviceId, `again ${i}`));
  }
  const fmt = (v: number[]) => v.map((ms) => `${Math.round(ms)}`).join(', ');
  console.log(`first deploy (ms): ${fmt(first)}  median ${Math.round(median(first))}`);
  console.log(`redeploy   (ms): ${fmt(again)}  median ${Math.round(median(again))}`);
} finally {
  for (const env of environments) await cleanEnvironment(env);
  await db.close();
  await database.drop();
  await rm(stateDir, { recursive: true, force: true });
}
