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
import { PgManagedDatabases } from '../src/adapters/postgres/managed-databases.ts';
import { type DeployJobDeps, handleDeployJob } from '../src/app/deploy-job.ts';
import { keyedSerializer } from '../src/app/keyed-serializer.ts';
import { log, RecordingRunner, recordingContext, secrets } from './support.ts';

const isolated = useIsolatedEnvironment();
let db: Database;
let stateDir: string;
let runner: RecordingRunner;
let deps: DeployJobDeps;
let charts: FsChartStore;

beforeAll(async () => {
  db = await openDatabase({ url: isolated.databaseUrl, schema: 'deploy', entities, migrations, log });
  stateDir = await mkdtemp(path.join(os.tmpdir(), 'deploy-target-'));
  runner = new RecordingRunner();
  runner.answer((command, args) =>
    command === 'helm' && args[0] === 'history'
      ? { exitCode: 0, stdout: '[{"revision":1,"status":"deployed"}]', stderr: '' }
      : undefined,
  );
  // A NodePort Service as the cluster answers for it, and a node.
  runner.answer((command, args) => {
    if (command !== 'kubectl' || args[0] !== 'get') return undefined;
    const reply = (o: object) => ({ exitCode: 0, stdout: JSON.stringify(o), stderr: '' });
    if (args[1] === 'nodes')
      return reply({ items: [{ status: { addresses: [{ type: 'InternalIP', address: '10.0.0.5' }] } }] });
    return reply({ spec: { type: 'NodePort', ports: [{ port: 80, targetPort: 'tcp-80', nodePort: 30080 }] } });
  });
  charts = new FsChartStore(path.join(stateDir, 'charts'), secrets);
  const kubernetes = new KubernetesRuntime({
    runner,
    charts,
    mirror: { push: '127.0.0.1:5000', pull: { '': 'registry.cluster.internal:5000' } },
  });
  deps = {
    releases: new PgReleaseStore({ db, secrets }),
    charts,
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
    source: { $case: 'container', value: { image: 'nginx', tag: '1', ports: [{ port: 80, public: true }] } },
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

describe('deploys a cluster can run', () => {
  it('installs the image from the pull address and records it as the mirror holds it', async () => {
    const j = job(newId(), {});
    const { result, calls } = await run(j);
    expect(result.succeeded).toBe(true);
    // helm read a copy opened from the store (gone now); the store's revision holds the same chart.
    const upgrade = calls.find((c) => c.command === 'helm' && c.args[0] === 'upgrade')!;
    expect(upgrade.args[3]).toContain(`${path.sep}.open${path.sep}`);
    const [release] = await deps.releases.history(j.service!.id);
    const manifests = await charts.manifests(release!.chartPath);
    const deployment = manifests.find((m) => m.kind === 'Deployment') as unknown as {
      spec: { template: { spec: { containers: Array<{ image: string }> } } };
    };
    expect(deployment.spec.template.spec.containers[0]!.image).toBe('registry.cluster.internal:5000/demo/target/web:1');
    const [recorded] = await deps.releases.history(j.service!.id);
    expect(recorded?.image).toBe('127.0.0.1:5000/demo/target/web:1');
  });

  it("reports a NodePort exposure's endpoint in the job's outcome, its message and the release, as the local runtime does", async () => {
    const j = job(newId(), {
      exposure: control.Exposure.fromPartial({ type: control.ExposureType.EXPOSURE_TYPE_NODE_PORT }),
    });
    const { result } = await run(j);
    expect(result.succeeded).toBe(true);
    expect(result.endpoints).toEqual([{ port: 80, url: 'http://10.0.0.5:30080' }]);
    expect(result.message).toBe('revision 1 deployed: http://10.0.0.5:30080');
    const [release] = await deps.releases.history(j.service!.id);
    expect(release?.endpoints).toEqual([{ port: 80, url: 'http://10.0.0.5:30080' }]);
  });

  it('fails a deploy on an unsupported helm before a revision is taken (FAILED_PRECONDITION, said once per worker)', async () => {
    const old = new RecordingRunner({ helmVersion: 'v2.17.0' });
    const oldDeps = { ...deps, runtime: () => new KubernetesRuntime({ runner: old }) };
    const j = job(newId(), {});
    const result = await handleDeployJob(
      oldDeps,
      j,
      recordingContext({ jobId: j.jobId, deploymentId: j.deploymentId, serviceId: j.service!.id }),
    );
    expect(result.succeeded).toBe(false);
    expect(result.state).toBe(control.ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR);
    expect(result.message).toBe('helm v2.17.0 is not supported (helm 3.8 or later 3.x, or helm 4.x)');
    expect(old.calls).toEqual([]);
    expect(await deps.releases.history(j.service!.id)).toEqual([]);
  });

  it('gives a MANAGED database of a kubernetes environment the in-cluster host, or says which setting is missing', async () => {
    const database = (environmentId: string) =>
      job(environmentId, {
        service: control.Service.fromPartial({
          id: newId(),
          environmentId,
          name: 'orders-db',
          kind: control.ServiceKind.SERVICE_KIND_DATABASE,
          source: {
            $case: 'database',
            value: { engine: 1, version: '16', mode: control.DatabaseMode.DATABASE_MODE_MANAGED },
          },
        }),
        image: '',
      });
    const localOnly = new PgManagedDatabases({
      adminUrl: isolated.databaseUrl,
      endpoints: { local: { host: 'host.containers.internal', port: 5432 } },
    });
    const refused = database(newId());
    const withoutKubeHost = await handleDeployJob(
      { ...deps, managed: localOnly },
      refused,
      recordingContext({ jobId: refused.jobId, deploymentId: refused.deploymentId, serviceId: refused.service!.id }),
    );
    expect(withoutKubeHost.succeeded).toBe(false);
    expect(withoutKubeHost.message).toBe(
      'no address of the managed PostgreSQL server is configured for the kubernetes runtime (set MANAGED_POSTGRES_KUBE_HOST on the deploy service)',
    );

    const managed = new PgManagedDatabases({
      adminUrl: isolated.databaseUrl,
      endpoints: {
        local: { host: 'host.containers.internal', port: 5432 },
        kubernetes: { host: 'postgres.stageline-system.svc.cluster.local', port: 5432 },
      },
    });
    const j = database(newId());
    const result = await handleDeployJob(
      { ...deps, managed },
      j,
      recordingContext({ jobId: j.jobId, deploymentId: j.deploymentId, serviceId: j.service!.id }),
    );
    try {
      expect(result.message).toContain('ready on postgres.stageline-system.svc.cluster.local:5432');
      expect(result.succeeded).toBe(true);
      // Plain here: the worker seals them on the way out (sealed-jobs).
      const outputs = result.outputs;
      expect(outputs.ORDERS_DB_HOST).toBe('postgres.stageline-system.svc.cluster.local');
      expect(outputs.ORDERS_DB_URL).toMatch(
        /^postgresql:\/\/[^@]+@postgres\.stageline-system\.svc\.cluster\.local:5432\//,
      );
    } finally {
      const credentials = await deps.credentials.get(j.service!.id);
      if (credentials !== undefined) await managed.drop(credentials);
    }
  });
});
