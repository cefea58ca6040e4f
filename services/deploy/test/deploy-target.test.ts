// Where a kubernetes deploy may go (issue 21), behind control's checks at input: only a context the
// operator registered, never a reserved namespace, and Helm releases named per environment so that two
// environments in one namespace never upgrade each other's release. Real PostgreSQL; helm through a
// recording runner (no cluster here).
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Database, newId, openDatabase } from '@stageline/db';
import { helmReleaseName } from '@stageline/policy';
import { bus, control } from '@stageline/proto';
import { useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entities } from '../src/adapters/db/entities.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { PgCredentialStore, PgReleaseStore } from '../src/adapters/db/release-store.ts';
import { FsChartStore } from '../src/adapters/fs/chart-store.ts';
import { KubernetesRuntime } from '../src/adapters/kubernetes/helm-runtime.ts';
import { type DeployJobDeps, handleDeployJob } from '../src/app/deploy-job.ts';
import { keyedSerializer } from '../src/app/keyed-serializer.ts';
import { log, RecordingRunner, recordingContext, secrets } from './support.ts';

const isolated = useIsolatedEnvironment();
let db: Database;
let stateDir: string;
let runner: RecordingRunner;
let deps: DeployJobDeps;

beforeAll(async () => {
  db = await openDatabase({ url: isolated.databaseUrl, schema: 'deploy', entities, migrations, log });
  stateDir = await mkdtemp(path.join(os.tmpdir(), 'deploy-target-'));
  runner = new RecordingRunner();
  runner.answer((command, args) =>
    command === 'helm' && args[0] === 'history'
      ? { exitCode: 0, stdout: '[{"revision":1,"status":"deployed"}]', stderr: '' }
      : undefined,
  );
  const kubernetes = new KubernetesRuntime({ runner });
  deps = {
    releases: new PgReleaseStore({ db, secrets }),
    charts: new FsChartStore(path.join(stateDir, 'charts'), secrets),
    credentials: new PgCredentialStore({ db, secrets }),
    runtime: (name) => (name === 'kubernetes' ? kubernetes : undefined),
    kubeContexts: ['staging-cluster'],
    serialize: keyedSerializer(),
    fingerprint: (value) => secrets.fingerprint(value),
    now: () => new Date(),
  };
});

afterAll(async () => {
  await db?.close();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

function job(environmentId: string, overrides: Partial<bus.DeployJob>): bus.DeployJob {
  const deploymentId = newId();
  const service = control.Service.fromPartial({
    id: newId(),
    environmentId,
    name: 'web',
    kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
    source: { $case: 'container', value: { image: 'nginx', tag: '1', ports: [{ port: 80, public: false }] } },
  });
  return bus.DeployJob.fromPartial({
    jobId: `${deploymentId}:${service.id}:deploy:1`,
    deploymentId,
    environmentId,
    project: 'demo',
    environmentName: 'target',
    action: control.Action.ACTION_DEPLOY,
    service,
    image: '127.0.0.1:5000/demo/target/web:1',
    runtime: 'kubernetes',
    kubernetesContext: 'staging-cluster',
    version: '1',
    attempt: 1,
    ...overrides,
  });
}

async function run(j: bus.DeployJob) {
  const before = runner.calls.length;
  const ctx = recordingContext({ jobId: j.jobId, deploymentId: j.deploymentId, serviceId: j.service!.id });
  const result = await handleDeployJob(deps, j, ctx);
  return { result, calls: runner.calls.slice(before) };
}

describe('deploy targets', () => {
  it('refuses a kube context the operator did not register, before helm runs', async () => {
    const { result, calls } = await run(job(newId(), { kubernetesContext: 'kind-admin' }));
    expect(result.succeeded).toBe(false);
    expect(result.state).toBe(control.ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR);
    expect(result.message).toContain('kube context "kind-admin" is not registered');
    expect(calls).toEqual([]);
  });

  it('refuses a reserved namespace, before helm runs', async () => {
    const { result, calls } = await run(job(newId(), { namespace: 'kube-system' }));
    expect(result.succeeded).toBe(false);
    expect(result.message).toContain('"kube-system" is reserved');
    expect(calls).toEqual([]);
  });

  it('names Helm releases per environment: two environments in one namespace never share one', async () => {
    const a = newId();
    const b = newId();
    const installed: string[] = [];
    for (const env of [a, b]) {
      const { result, calls } = await run(job(env, { namespace: 'shared' }));
      expect(result.message).toBe(result.succeeded ? result.message : 'should have succeeded');
      const upgrade = calls.find((c) => c.command === 'helm' && c.args[0] === 'upgrade');
      installed.push(upgrade!.args[2]!);
    }
    expect(installed).toEqual([helmReleaseName(a, 'web'), helmReleaseName(b, 'web')]);
    expect(installed[0]).not.toBe(installed[1]);
  });
});
