// The files that carry secret values to podman (issue 20): 0600 in a 0700 directory while podman reads
// them, removed once it has; what a job prints never shows them. Real podman; the spy only looks at
// the file podman is handed.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Database, newId, openDatabase } from '@stageline/db';
import { bus, control } from '@stageline/proto';
import { useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entities } from '../src/adapters/db/entities.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { PgCredentialStore, PgHostPorts, PgReleaseStore } from '../src/adapters/db/release-store.ts';
import { FsChartStore } from '../src/adapters/fs/chart-store.ts';
import { LocalRuntime } from '../src/adapters/podman/local-runtime.ts';
import { Podman } from '../src/adapters/podman/podman.ts';
import { pickFreePort } from '../src/adapters/process/free-port.ts';
import { type DeployJobDeps, handleDeployJob } from '../src/app/deploy-job.ts';
import { keyedSerializer } from '../src/app/keyed-serializer.ts';
import { cleanEnvironment, log, recordingContext, runner, secrets } from './support.ts';

const SECRET = `s3cret-${newId()}`;

interface Seen {
  file: string;
  fileMode: number;
  dirMode: number;
  carriesSecret: boolean;
}

/** Real podman; notes the mode and content of every file kube play is handed, as podman gets it. */
class WatchedPodman extends Podman {
  readonly seen: Seen[] = [];
  override async kubePlay(file: string, network: string, alias: string, signal?: AbortSignal): Promise<void> {
    this.seen.push({
      file,
      fileMode: (await stat(file)).mode & 0o777,
      dirMode: (await stat(path.dirname(file))).mode & 0o777,
      carriesSecret: (await readFile(file, 'utf8')).includes(SECRET),
    });
    return super.kubePlay(file, network, alias, signal);
  }
}

const isolated = useIsolatedEnvironment();
const podman = new WatchedPodman({ runner });
let db: Database;
let stateDir: string;
let deps: DeployJobDeps;
const environmentId = newId();

beforeAll(async () => {
  db = await openDatabase({ url: isolated.databaseUrl, schema: 'deploy', entities, migrations, log });
  stateDir = await mkdtemp(path.join(os.tmpdir(), 'deploy-files-'));
  const charts = new FsChartStore(path.join(stateDir, 'charts'), secrets);
  const ports = new PgHostPorts({ db, pickFreePort });
  const local = new LocalRuntime({ podman, ports, charts, workDir: path.join(stateDir, 'local'), log });
  deps = {
    releases: new PgReleaseStore({ db, secrets }),
    charts,
    credentials: new PgCredentialStore({ db, secrets }),
    runtime: (name) => (name === 'local' ? local : undefined),
    serialize: keyedSerializer(),
    fingerprint: (value) => secrets.fingerprint(value),
    now: () => new Date(),
  };
}, 120_000);

afterAll(async () => {
  await cleanEnvironment(environmentId);
  await db?.close();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

function deployJob(svc: control.Service): bus.DeployJob {
  const deploymentId = newId();
  return bus.DeployJob.fromPartial({
    jobId: `${deploymentId}:${svc.id}:deploy:1`,
    deploymentId,
    environmentId,
    project: 'demo',
    environmentName: 'files',
    action: control.Action.ACTION_DEPLOY,
    service: svc,
    image: '127.0.0.1:5001/examples/busybox:1.36',
    runtime: 'local',
    version: 'test',
    attempt: 1,
  });
}

describe('runtime files on the local runtime', () => {
  it('a service and a lifecycle job: 0600 in 0700 while podman reads them, removed once it has', async () => {
    const web = control.Service.fromPartial({
      id: newId(),
      environmentId,
      name: 'web',
      kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
      source: {
        $case: 'container',
        value: { image: '127.0.0.1:5001/examples/busybox', tag: '1.36', ports: [{ port: 8080 }] },
      },
      envVars: [{ key: 'API_TOKEN', value: SECRET, secret: true }],
      readinessTimeoutSeconds: 30,
    });
    const migrate = control.Service.fromPartial({
      id: newId(),
      environmentId,
      name: 'migrate',
      kind: control.ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
      source: {
        $case: 'job',
        value: {
          from: { $case: 'container', value: { image: '127.0.0.1:5001/examples/busybox', tag: '1.36' } },
          onDeploy: true,
          maxDurationSeconds: 60,
        },
      },
      envVars: [
        // The example image runs this script instead of serving: the job sees its secret.
        { key: 'EXAMPLE_SCRIPT', value: 'test -n "$API_TOKEN" && echo "token=$API_TOKEN"', secret: false },
        { key: 'API_TOKEN', value: SECRET, secret: true },
      ],
    });
    for (const svc of [web, migrate]) {
      const j = deployJob(svc);
      const ctx = recordingContext({ jobId: j.jobId, deploymentId: j.deploymentId, serviceId: svc.id });
      const result = await handleDeployJob(deps, j, ctx);
      expect(result.succeeded, result.message).toBe(true);
      expect(ctx.lines.join('\n')).not.toContain(SECRET);
      // What the job printed is there, its secret redacted (cron ticks run the same way).
      if (svc === migrate) expect(ctx.lines).toContain('migrate | token=***');
    }
    expect(podman.seen.length).toBe(2);
    for (const seen of podman.seen) {
      expect(seen).toMatchObject({ fileMode: 0o600, dirMode: 0o700, carriesSecret: true });
      await expect(stat(seen.file)).rejects.toMatchObject({ code: 'ENOENT' });
    }
  });
});
