// The kubernetes runtime through a recording CommandRunner (Helm and Kubernetes cannot run here):
// the exact argv, namespace and context of every operation, and how results are read.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { helmReleaseName } from '@stageline/policy';
import { bus, control } from '@stageline/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsChartStore } from '../src/adapters/fs/chart-store.ts';
import { KubernetesRuntime } from '../src/adapters/kubernetes/helm-runtime.ts';
import { ProcessRunner } from '../src/adapters/process/command-runner.ts';
import type { RuntimeContext } from '../src/app/ports.ts';
import { renderChart } from '../src/domain/chart.ts';
import { renderCustomChart } from '../src/domain/custom-chart.ts';
import { RolloutCanceled, RolloutError } from '../src/domain/failures.ts';
import type { Release } from '../src/domain/release.ts';
import { workloadFromJob } from '../src/domain/workload.ts';
import { RecordingRunner, secrets } from './support.ts';

const NS = 'demo-staging';
// Helm release names carry the environment (issue 21): two environments never share one.
const API = helmReleaseName('env-1', 'api');
const MIGRATE = helmReleaseName('env-1', 'migrate');
const DB = helmReleaseName('env-1', 'db');
const CTX = 'prod-cluster';

let dir: string;
let chartPath: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'deploy-k8s-'));
  const workload = workloadFromJob(
    bus.DeployJob.fromPartial({
      environmentId: 'env-1',
      environmentName: 'staging',
      project: 'demo',
      image: '127.0.0.1:5000/demo/staging/api:2',
      service: {
        id: 'svc-1',
        name: 'api',
        kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
        source: { $case: 'container', value: { image: 'x', tag: '2', ports: [{ port: 80, public: true }] } },
      },
    }),
  );
  chartPath = await new FsChartStore(dir, secrets).write(
    { environmentId: 'env-1', serviceId: 'svc-1', revision: 2 },
    renderChart(workload, 2),
  );
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function release(overrides: Partial<Release> = {}): Release {
  const now = new Date();
  return {
    id: 'r2',
    serviceId: 'svc-1',
    serviceName: 'api',
    environmentId: 'env-1',
    revision: 2,
    deploymentId: 'd',
    jobId: 'j',
    runtime: 'kubernetes',
    namespace: NS,
    kubeContext: CTX,
    image: '127.0.0.1:5000/demo/staging/api:2',
    digest: '',
    version: '2',
    configHash: 'h',
    chartPath,
    status: 'DEPLOYED',
    message: '',
    hostPorts: [],
    endpoints: [],
    readinessTimeoutSeconds: 120,
    runtimeRevision: 0,
    kind: 'CONTAINER',
    schedule: '',
    createdAt: now,
    updatedAt: now,
    ...overrides,
  };
}

function context(signal: AbortSignal = new AbortController().signal): RuntimeContext & { lines: string[] } {
  const lines: string[] = [];
  return { signal, lines, output: (l) => lines.push(l), working: () => {} };
}

describe('kubernetes runtime (recorded argv)', () => {
  it('deploys with helm upgrade --install --atomic --wait into the namespace and context, then reads helm revision', async () => {
    const runner = new RecordingRunner();
    runner.answer((command, args) =>
      command === 'helm' && args[0] === 'history'
        ? { exitCode: 0, stdout: '[{"revision":5,"status":"deployed"}]', stderr: '' }
        : undefined,
    );
    const result = await new KubernetesRuntime({ runner }).apply(release(), context());
    expect(runner.calls).toEqual([
      {
        command: 'helm',
        args: [
          'upgrade',
          '--install',
          API,
          chartPath,
          '--namespace',
          NS,
          '--kube-context',
          CTX,
          '--create-namespace',
          '--atomic',
          '--wait',
          '--timeout',
          '120s',
        ],
      },
      {
        command: 'helm',
        args: ['history', API, '--namespace', NS, '--kube-context', CTX, '--max', '1', '--output', 'json'],
      },
    ]);
    expect(result.runtimeRevision).toBe(5);
  });

  it('uses the kubeconfig current context when the environment names none', async () => {
    const runner = new RecordingRunner();
    await new KubernetesRuntime({ runner }).stop(release({ kubeContext: '' }), context());
    expect(runner.calls).toEqual([
      { command: 'kubectl', args: ['scale', 'deployment', 'api', '--replicas=0', '--namespace', NS] },
    ]);
  });

  it('stops by scaling the Deployment to zero (kubectl --context)', async () => {
    const runner = new RecordingRunner();
    await new KubernetesRuntime({ runner }).stop(release(), context());
    expect(runner.calls).toEqual([
      { command: 'kubectl', args: ['scale', 'deployment', 'api', '--replicas=0', '--namespace', NS, '--context', CTX] },
    ]);
  });

  it('restarts with kubectl rollout restart and waits with rollout status; a stopped release is scaled up', async () => {
    const runner = new RecordingRunner();
    const runtime = new KubernetesRuntime({ runner });
    await runtime.restart(release(), context());
    await runtime.restart(release({ status: 'STOPPED' }), context());
    const target = ['--namespace', NS, '--context', CTX];
    expect(runner.calls).toEqual([
      { command: 'kubectl', args: ['rollout', 'restart', 'deployment/api', ...target] },
      { command: 'kubectl', args: ['rollout', 'status', 'deployment/api', ...target, '--watch', '--timeout=120s'] },
      { command: 'kubectl', args: ['scale', 'deployment/api', '--replicas=1', ...target] },
      { command: 'kubectl', args: ['rollout', 'status', 'deployment/api', ...target, '--watch', '--timeout=120s'] },
    ]);
  });

  it('deletes with helm uninstall (its PVC template goes with it) and treats "not found" as done', async () => {
    const runner = new RecordingRunner();
    runner.answer(() => ({
      exitCode: 1,
      stdout: '',
      stderr: 'Error: uninstall: Release not loaded: api: release: not found',
    }));
    await new KubernetesRuntime({ runner }).remove(release(), context());
    expect(runner.calls).toEqual([
      {
        command: 'helm',
        args: ['uninstall', API, '--namespace', NS, '--kube-context', CTX, '--wait', '--timeout', '120s'],
      },
    ]);
  });

  it('rolls back to the previous release by its helm revision, or uninstalls a failed first release', async () => {
    const runner = new RecordingRunner();
    const runtime = new KubernetesRuntime({ runner });
    await runtime.rollbackTo(release({ revision: 3 }), release({ revision: 2, runtimeRevision: 4 }), context());
    await runtime.rollbackTo(release({ revision: 1 }), undefined, context());
    expect(runner.calls).toEqual([
      {
        command: 'helm',
        args: ['rollback', API, '4', '--namespace', NS, '--kube-context', CTX, '--wait', '--timeout', '120s'],
      },
      {
        command: 'helm',
        args: ['uninstall', API, '--namespace', NS, '--kube-context', CTX, '--wait', '--timeout', '120s'],
      },
    ]);
  });

  it('reports a helm timeout as "not ready" and any other failure with helm\'s message', async () => {
    const timedOut = new RecordingRunner();
    timedOut.answer(() => ({ exitCode: 1, stdout: '', stderr: 'Error: UPGRADE FAILED: context deadline exceeded' }));
    const error = await new KubernetesRuntime({ runner: timedOut }).apply(release(), context()).catch((e) => e);
    expect(error).toBeInstanceOf(RolloutError);
    expect(error.message).toMatch(/^not ready after 120s: Error: UPGRADE FAILED: context deadline exceeded/);

    const refused = new RecordingRunner();
    refused.answer(() => ({ exitCode: 1, stdout: '', stderr: 'Error: namespaces "x" is forbidden' }));
    const other = await new KubernetesRuntime({ runner: refused }).apply(release(), context()).catch((e) => e);
    expect(other.message).toBe('helm upgrade failed: Error: namespaces "x" is forbidden');
  });

  it('turns an aborted helm into RolloutCanceled', async () => {
    const controller = new AbortController();
    const runner = new RecordingRunner();
    runner.run = async (command, args) => {
      runner.calls.push({ command, args: [...args] });
      controller.abort();
      throw new Error('killed');
    };
    const error = await new KubernetesRuntime({ runner }).apply(release(), context(controller.signal)).catch((e) => e);
    expect(error).toBeInstanceOf(RolloutCanceled);
  });

  it('charts it installs are complete Helm charts with the Kubernetes objects of the release', async () => {
    const manifests = await new FsChartStore(dir, secrets).manifests(chartPath);
    expect(manifests.map((m) => `${m.apiVersion}/${m.kind}/${m.metadata.name}`).sort()).toEqual([
      'apps/v1/Deployment/api',
      'v1/Service/api',
    ]);
  });

  it('recovers a release stuck in pending-upgrade (rollback to the previous helm revision) or pending-install (uninstall)', async () => {
    const answer = (status: string, version: number) => {
      const runner = new RecordingRunner();
      runner.answer((command, args) =>
        command === 'helm' && args[0] === 'status'
          ? { exitCode: 0, stdout: JSON.stringify({ name: 'api', version, info: { status } }), stderr: '' }
          : undefined,
      );
      return runner;
    };
    const upgrade = answer('pending-upgrade', 6);
    const message = await new KubernetesRuntime({ runner: upgrade }).recover(
      release({ revision: 4 }),
      release({ revision: 3, runtimeRevision: 5 }),
      [],
      context(),
    );
    expect(message).toBe(`release ${API} was stuck in pending-upgrade: rolled back to helm revision 5`);
    expect(upgrade.calls).toEqual([
      { command: 'helm', args: ['status', API, '--namespace', NS, '--kube-context', CTX, '--output', 'json'] },
      {
        command: 'helm',
        args: ['rollback', API, '5', '--namespace', NS, '--kube-context', CTX, '--wait', '--timeout', '120s'],
      },
    ]);

    const install = answer('pending-install', 1);
    expect(await new KubernetesRuntime({ runner: install }).recover(release(), undefined, [], context())).toContain(
      'uninstalled',
    );
    expect(install.calls[1]).toEqual({
      command: 'helm',
      args: ['uninstall', API, '--namespace', NS, '--kube-context', CTX, '--wait', '--timeout', '120s'],
    });

    // Deployed, or never installed: nothing to recover, nothing run but the status.
    const fine = answer('deployed', 3);
    expect(await new KubernetesRuntime({ runner: fine }).recover(release(), undefined, [], context())).toBeUndefined();
    expect(fine.calls).toHaveLength(1);
    const absent = new RecordingRunner();
    absent.answer(() => ({ exitCode: 1, stdout: '', stderr: 'Error: release: not found' }));
    expect(
      await new KubernetesRuntime({ runner: absent }).recover(release(), undefined, [], context()),
    ).toBeUndefined();
  });

  it('runs a lifecycle job with --wait-for-jobs and reads its output.json from the pod termination message', async () => {
    const runner = new RecordingRunner();
    runner.answer((command, args) => {
      if (command === 'kubectl' && args[0] === 'get') {
        const pods = {
          items: [
            { status: { containerStatuses: [{ state: { terminated: { exitCode: 1, message: 'first try' } } }] } },
            { status: { containerStatuses: [{ state: { terminated: { exitCode: 0, message: '{"API_KEY":"k"}' } } }] } },
          ],
        };
        return { exitCode: 0, stdout: JSON.stringify(pods), stderr: '' };
      }
      return undefined;
    });
    const result = await new KubernetesRuntime({ runner }).apply(
      release({ serviceName: 'migrate', kind: 'LIFECYCLE_JOB', revision: 4 }),
      context(),
    );
    expect(runner.calls[0]!.args).toEqual([
      'upgrade',
      '--install',
      MIGRATE,
      chartPath,
      '--namespace',
      NS,
      '--kube-context',
      CTX,
      '--create-namespace',
      '--atomic',
      '--wait',
      '--wait-for-jobs',
      '--timeout',
      '120s',
    ]);
    expect(runner.calls[2]).toEqual({
      command: 'kubectl',
      args: [
        'get',
        'pods',
        '--selector',
        'job-name=migrate-4',
        '--namespace',
        NS,
        '--context',
        CTX,
        '--output',
        'json',
      ],
    });
    expect(result.outputs).toEqual({ API_KEY: 'k' });
  });

  it("suspends and resumes a CronJob; scales a StatefulSet; deletes a database's claims with it", async () => {
    const runner = new RecordingRunner();
    const runtime = new KubernetesRuntime({ runner });
    const target = ['--namespace', NS, '--context', CTX];
    await runtime.stop(release({ serviceName: 'nightly', kind: 'CRON_JOB' }), context());
    await runtime.restart(release({ serviceName: 'nightly', kind: 'CRON_JOB', status: 'STOPPED' }), context());
    await runtime.stop(release({ serviceName: 'db', kind: 'DATABASE' }), context());
    await runtime.remove(release({ serviceName: 'db', kind: 'DATABASE' }), context());
    expect(runner.calls).toEqual([
      {
        command: 'kubectl',
        args: ['patch', 'cronjob', 'nightly', '--type', 'merge', '--patch', '{"spec":{"suspend":true}}', ...target],
      },
      {
        command: 'kubectl',
        args: ['patch', 'cronjob', 'nightly', '--type', 'merge', '--patch', '{"spec":{"suspend":false}}', ...target],
      },
      { command: 'kubectl', args: ['scale', 'statefulset', 'db', '--replicas=0', ...target] },
      {
        command: 'helm',
        args: ['uninstall', DB, '--namespace', NS, '--kube-context', CTX, '--wait', '--timeout', '120s'],
      },
      {
        command: 'kubectl',
        args: [
          'delete',
          'persistentvolumeclaim',
          '--selector',
          `app.kubernetes.io/instance=${DB}`,
          '--ignore-not-found',
          '--wait=false',
          ...target,
        ],
      },
    ]);
  });

  it('refuses a custom chart from git whose symbolic links leave the chart; links inside it are fine', async () => {
    const store = new FsChartStore(dir, secrets);
    const secretFile = path.join(dir, 'worker-secret.txt');
    await writeFile(secretFile, 'the worker host only');
    const git = (cwd: string, ...args: string[]) =>
      execFileSync('git', args, {
        cwd,
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 't',
          GIT_AUTHOR_EMAIL: 't@t',
          GIT_COMMITTER_NAME: 't',
          GIT_COMMITTER_EMAIL: 't@t',
        },
      })
        .toString()
        .trim();
    /** A repository with deploy/chart, plus the links `links` (path in the chart → target); its commit. */
    const repoWith = async (name: string, links: Record<string, string>) => {
      const repo = path.join(dir, name);
      await mkdir(path.join(repo, 'deploy/chart/templates'), { recursive: true });
      await writeFile(path.join(repo, 'deploy/chart/Chart.yaml'), 'apiVersion: v2\nname: web\nversion: 1.0.0\n');
      await writeFile(path.join(repo, 'deploy/chart/templates/cm.yaml'), 'kind: ConfigMap\n');
      for (const [at, target] of Object.entries(links)) await symlink(target, path.join(repo, 'deploy/chart', at));
      git(repo, 'init', '-q', '--initial-branch=main');
      git(repo, 'add', '-A');
      git(repo, 'commit', '-q', '-m', 'chart');
      return { url: `file://${repo}`, commit: git(repo, 'rev-parse', 'HEAD') };
    };
    // Real git, recorded helm: whatever reaches `helm upgrade` is what helm would read.
    const recorder = new RecordingRunner();
    const real = new ProcessRunner();
    const runner = {
      run: (command: string, args: readonly string[], options?: Parameters<ProcessRunner['run']>[2]) =>
        command === 'git' ? real.run(command, args, options) : recorder.run(command, args, options),
    };
    const runtime = new KubernetesRuntime({ runner, charts: store });
    const install = async (serviceId: string, repo: { url: string; commit: string }) => {
      const job = bus.DeployJob.fromPartial({
        environmentId: 'env-1',
        image: '127.0.0.1:5000/demo/staging/api:2@sha256:abc',
        version: `commit:${repo.commit}`,
        service: {
          id: serviceId,
          name: 'api',
          kind: control.ServiceKind.SERVICE_KIND_APPLICATION,
          source: { $case: 'application', value: { gitUrl: repo.url, ports: [] } },
          chart: { source: { $case: 'path', value: 'deploy/chart' }, valuesYaml: '' },
        },
      });
      const chartPath = await store.write(
        { environmentId: 'env-1', serviceId, revision: 1 },
        renderCustomChart(job, 1),
      );
      return runtime.apply(release({ chartPath, kind: 'CUSTOM_CHART' }), context());
    };

    const leaking = await repoWith('leaking', { 'templates/secret.yaml': secretFile });
    await expect(install('s1', leaking)).rejects.toThrow(
      /custom chart deploy\/chart: templates\/secret.yaml is a symbolic link leaving the chart: refused/,
    );
    const climbing = await repoWith('climbing', { 'templates/up.yaml': '../../../outside.yaml' });
    await expect(install('s2', climbing)).rejects.toThrow(
      /templates\/up.yaml is a symbolic link (leaving the chart|to nothing)/,
    );
    expect(recorder.calls.filter((c) => c.command === 'helm')).toEqual([]);

    const tidy = await repoWith('tidy', { 'templates/same.yaml': 'cm.yaml' });
    await install('s3', tidy);
    expect(recorder.calls.some((c) => c.command === 'helm' && c.args[0] === 'upgrade')).toBe(true);
  });

  it('installs a custom chart from a chart repository, an OCI registry or the git repository, values after overrides', async () => {
    const store = new FsChartStore(dir, secrets);
    const write = async (serviceId: string, chart: control.CustomChart, version = 'tag:2', extra = {}) => {
      const job = bus.DeployJob.fromPartial({
        environmentId: 'env-1',
        image: '127.0.0.1:5000/demo/staging/api:2@sha256:abc',
        version,
        service: {
          id: serviceId,
          name: 'api',
          kind: control.ServiceKind.SERVICE_KIND_APPLICATION,
          source: { $case: 'application', value: { gitUrl: 'file:///srv/git/api.git', ports: [] } },
          chart,
        },
        ...extra,
      });
      return store.write({ environmentId: 'env-1', serviceId, revision: 1 }, renderCustomChart(job, 1));
    };
    const repo = await write('c1', {
      source: { $case: 'repository', value: { url: 'https://charts.example.com', name: 'web', version: '1.2.3' } },
      valuesYaml: 'replicaCount: 2',
    });
    const oci = await write('c2', {
      source: { $case: 'repository', value: { url: 'oci://registry.example.com/charts', name: 'web', version: '' } },
      valuesYaml: '',
    });
    const git = await write(
      'c3',
      { source: { $case: 'path', value: 'deploy/chart' }, valuesYaml: '' },
      `commit:${'f'.repeat(40)}`,
    );
    const runner = new RecordingRunner();
    // What helm was given, read while it ran: the values in clear, in a copy that is gone afterwards.
    const seen: string[] = [];
    runner.answer((command, args) => {
      if (command === 'helm' && args[0] === 'upgrade')
        seen.push(readFileSync(args[args.indexOf('--values') + 3]!, 'utf8'));
      return undefined;
    });
    const runtime = new KubernetesRuntime({ runner, charts: store });
    // helm reads a copy opened from the store (the store keeps the values sealed): <dir>/.open/<copy>.
    const OPENED = path.join(dir, '<opened>');
    const values = (p: string) => [
      '--values',
      path.join(p, 'values-overrides.yaml'),
      '--values',
      path.join(p, 'values-stageline.yaml'),
    ];
    const tail = [
      '--namespace',
      NS,
      '--kube-context',
      CTX,
      '--create-namespace',
      '--atomic',
      '--wait',
      '--timeout',
      '120s',
    ];
    for (const chart of [repo, oci, git]) {
      await runtime.apply(release({ chartPath: chart, kind: 'CUSTOM_CHART' }), context());
    }
    const opened = (args: string[]) => args.map((a) => a.replace(/\/\.open\/[^/]+/, '/<opened>'));
    const upgrades = runner.calls
      .filter((c) => c.command === 'helm' && c.args[0] === 'upgrade')
      .map((c) => opened(c.args));
    expect(upgrades).toEqual([
      [
        'upgrade',
        '--install',
        API,
        'web',
        '--repo',
        'https://charts.example.com',
        '--version',
        '1.2.3',
        ...values(OPENED),
        ...tail,
      ],
      ['upgrade', '--install', API, 'oci://registry.example.com/charts/web', ...values(OPENED), ...tail],
      ['upgrade', '--install', API, path.join(OPENED, 'source', 'deploy/chart'), ...values(OPENED), ...tail],
    ]);
    expect(runner.calls.filter((c) => c.command === 'git').map((c) => opened(c.args))).toEqual([
      ['clone', '--quiet', '--no-checkout', '--', 'file:///srv/git/api.git', path.join(OPENED, 'source')],
      ['-C', path.join(OPENED, 'source'), 'checkout', '--quiet', '--detach', 'f'.repeat(40)],
    ]);
    // Helm read Stageline's values in clear; the store holds them sealed only; the copies are gone.
    expect(seen.length).toBe(3);
    for (const values of seen) expect(values).toContain('repository: 127.0.0.1:5000/demo/staging/api');
    for (const chart of [repo, oci, git]) {
      expect(readdirSync(chart).sort()).toEqual([
        'custom.json',
        'values-overrides.yaml',
        'values-stageline.yaml.sealed',
      ]);
      expect(readFileSync(path.join(chart, 'values-stageline.yaml.sealed'), 'utf8')).toMatch(/^sl:v1:/);
    }
    expect(readdirSync(path.join(dir, '.open'))).toEqual([]);
  });
});
