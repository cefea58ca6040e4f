// Every kind of service as a chart (pure): strategies, jobs, cron jobs, databases, custom charts — and every
// manifest Stageline generates, the local runtime's podman inputs included, validated against the
// Kubernetes schemas (kubernetes-models: the OpenAPI schemas of the Kubernetes API, compiled).

import { bus, control } from '@stageline/proto';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { ConfigMap, PersistentVolumeClaim, Pod, Secret, Service } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { type Manifest, renderChart } from '../src/domain/chart.ts';
import { dueTick, firesAt, parseCron } from '../src/domain/cron.ts';
import { renderCustomChart, splitImage } from '../src/domain/custom-chart.ts';
import { parseJobOutput } from '../src/domain/job-output.ts';
import { planLocal, planLocalJob } from '../src/domain/local-plan.ts';
import { environmentKey } from '../src/domain/names.ts';
import { connectionOutputs, workloadFromJob } from '../src/domain/workload.ts';

const ENV_ID = '0195f0a0-0000-7000-8000-000000000001';
const IMAGE = `127.0.0.1:5000/demo/staging/svc:1.36@sha256:${'a'.repeat(64)}`;
const { ServiceKind } = control;

// biome-ignore lint/suspicious/noExplicitAny: manifests are read as untyped trees; the assertions are the schema.
type Tree = any;

function deployJob(service: Partial<control.Service>, extra: Partial<bus.DeployJob> = {}): bus.DeployJob {
  return bus.DeployJob.fromPartial({
    jobId: 'j',
    deploymentId: 'd',
    environmentId: ENV_ID,
    project: 'demo',
    environmentName: 'staging',
    action: control.Action.ACTION_DEPLOY,
    image: IMAGE,
    runtime: 'kubernetes',
    version: 'tag:1.36',
    service: control.Service.fromPartial({
      id: `svc-${service.name ?? 'x'}`,
      environmentId: ENV_ID,
      envVars: [
        { key: 'GREETING', value: 'hello', secret: false },
        { key: 'TOKEN', value: 's3cret', secret: true },
      ],
      ...service,
    }),
    ...extra,
  });
}

const container = (ports: control.Port[] = [{ port: 8080, public: true }]) => ({
  $case: 'container' as const,
  value: { image: '127.0.0.1:5001/examples/busybox', tag: '1.36', ports },
});
const jobSource = (value: Partial<control.JobSource>) => ({
  $case: 'job' as const,
  value: control.JobSource.fromPartial({ from: container([]), maxDurationSeconds: 120, maxRetries: 2, ...value }),
});

// One of each kind, with each probe type and strategy: the charts the schema test walks through.
const SAMPLES: Array<
  [string, bus.DeployJob, { database?: { username: string; password: string; database: string } }?]
> = [
  [
    'container, rolling update 1/50%, http probe',
    deployJob({
      name: 'web',
      kind: ServiceKind.SERVICE_KIND_CONTAINER,
      source: container(),
      strategy: { type: 1, maxSurge: '1', maxUnavailable: '50%' },
      healthCheck: control.HealthCheck.fromPartial({
        probe: { $case: 'http', value: { path: '/healthz', port: 8080 } },
      }),
    }),
  ],
  [
    'container, recreate, exec probe',
    deployJob({
      name: 'worker',
      kind: ServiceKind.SERVICE_KIND_CONTAINER,
      source: container([]),
      strategy: { type: 2, maxSurge: '', maxUnavailable: '' },
      healthCheck: control.HealthCheck.fromPartial({ probe: { $case: 'exec', value: { command: ['cat', '/ready'] } } }),
    }),
  ],
  [
    'application, default strategy, tcp probe',
    deployJob({
      name: 'api',
      kind: ServiceKind.SERVICE_KIND_APPLICATION,
      source: {
        $case: 'application',
        value: control.ApplicationSource.fromPartial({
          gitUrl: 'file:///r.git',
          ports: [{ port: 9090, public: false }],
        }),
      },
    }),
  ],
  [
    'container database',
    deployJob({
      name: 'db',
      kind: ServiceKind.SERVICE_KIND_DATABASE,
      source: { $case: 'database', value: { engine: 1, version: '16', mode: 1, image: '' } },
    }),
    { database: { username: 'u', password: 'p', database: 'd' } },
  ],
  [
    'lifecycle job',
    deployJob({
      name: 'migrate',
      kind: ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
      source: jobSource({ onDeploy: true }),
    }),
  ],
  [
    'cron job',
    deployJob({
      name: 'nightly',
      kind: ServiceKind.SERVICE_KIND_CRON_JOB,
      source: jobSource({ schedule: '*/5 * * * *' }),
    }),
  ],
];

const MODELS: Record<string, { new (data: never): { validate(): void } }> = {
  'apps/v1/Deployment': Deployment as never,
  'apps/v1/StatefulSet': StatefulSet as never,
  'batch/v1/Job': Job as never,
  'batch/v1/CronJob': CronJob as never,
  'v1/ConfigMap': ConfigMap as never,
  'v1/Secret': Secret as never,
  'v1/Service': Service as never,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim as never,
  'v1/Pod': Pod as never,
};

/** Validates against the Kubernetes schema of its apiVersion and kind; throws with the schema's complaint. */
function validate(manifest: { apiVersion: string; kind: string }): void {
  const Model = MODELS[`${manifest.apiVersion}/${manifest.kind}`];
  if (Model === undefined) throw new Error(`no schema for ${manifest.apiVersion}/${manifest.kind}`);
  new Model(manifest as never).validate();
}

function templates(chart: ReturnType<typeof renderChart>): Manifest[] {
  return chart.files
    .filter((f) => f.path.startsWith('templates/'))
    .flatMap((f) => parseAllDocuments(f.content).map((d) => d.toJS() as Manifest));
}

const byKind = (list: Manifest[], kind: string): Tree => list.find((m) => m.kind === kind);

describe('every generated manifest validates against the Kubernetes schemas', () => {
  it.each(SAMPLES)('%s: chart templates and the local runtime podman input', (_name, j, extras) => {
    const list = templates(renderChart(workloadFromJob(j, extras ?? {}), 3));
    expect(list.length).toBeGreaterThan(0);
    for (const m of list) expect(() => validate(m), `${m.kind} ${m.metadata.name}`).not.toThrow();
    // What podman kube play gets (a Deployment, or a job's Pod) is a Kubernetes object too.
    const hasJob = list.some((m) => m.kind === 'Job' || m.kind === 'CronJob');
    const kubeYaml = hasJob
      ? planLocalJob({
          environmentId: ENV_ID,
          manifests: list,
          runName: 'r3',
          outputDir: '/tmp/o',
          outputMountPath: '/stageline/output',
        }).kubeYaml
      : planLocal({ environmentId: ENV_ID, manifests: list, hostPorts: new Map([[8080, 40000]]) }).kubeYaml;
    for (const doc of parseAllDocuments(kubeYaml)) expect(() => validate(doc.toJS())).not.toThrow();
  });

  it('the validation can fail: a wrong type, a missing field or a bad enum value is caught', () => {
    const deployment = byKind(templates(renderChart(workloadFromJob(SAMPLES[0]![1]), 1)), 'Deployment');
    const broken = structuredClone(deployment);
    broken.spec.template.spec.containers[0].ports[0].containerPort = '8080';
    expect(() => validate(broken)).toThrow(/containerPort must be integer/);
    const noSelector = structuredClone(deployment);
    delete noSelector.spec.selector;
    expect(() => validate(noSelector)).toThrow(/selector/);
    const cron = byKind(templates(renderChart(workloadFromJob(SAMPLES[5]![1]), 1)), 'CronJob');
    const noSchedule = structuredClone(cron);
    delete noSchedule.spec.schedule;
    expect(() => validate(noSchedule)).toThrow(/schedule/);
  });
});

describe('strategies (Service.strategy)', () => {
  it('RollingUpdate by default with 25%/25%, configurable as counts or percentages; Recreate', () => {
    const strategy = (s?: control.DeploymentStrategy) =>
      byKind(
        templates(
          renderChart(
            workloadFromJob(
              deployJob({
                name: 'web',
                kind: ServiceKind.SERVICE_KIND_CONTAINER,
                source: container(),
                ...(s ? { strategy: s } : {}),
              }),
            ),
            1,
          ),
        ),
        'Deployment',
      ).spec.strategy;
    expect(strategy()).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } });
    expect(strategy({ type: 1, maxSurge: '2', maxUnavailable: '0' })).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxSurge: 2, maxUnavailable: 0 },
    });
    expect(strategy({ type: 2, maxSurge: '', maxUnavailable: '' })).toEqual({ type: 'Recreate' });
  });

  it('readiness, liveness and startup probes come from the health check', () => {
    const c = byKind(templates(renderChart(workloadFromJob(SAMPLES[0]![1]), 1)), 'Deployment').spec.template.spec
      .containers[0];
    for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
      expect(c[probe].httpGet, probe).toMatchObject({ path: '/healthz', port: 8080 });
    }
  });
});

describe('lifecycle and cron jobs as charts', () => {
  it('a lifecycle job is a Job run once per revision: retries, max duration, output as termination message', () => {
    const w = workloadFromJob(SAMPLES[4]![1]);
    const job = byKind(templates(renderChart(w, 7)), 'Job');
    expect(job.metadata.name).toBe('migrate-7');
    expect(job.spec.backoffLimit).toBe(2);
    const pod = job.spec.template.spec;
    expect(pod.restartPolicy).toBe('Never');
    expect(pod.activeDeadlineSeconds).toBe(120);
    expect(pod.containers[0]).toMatchObject({
      terminationMessagePath: '/stageline/output/output.json',
      terminationMessagePolicy: 'File',
    });
    expect(pod.containers[0].ports).toBeUndefined();
    expect(pod.containers[0].readinessProbe).toBeUndefined();
    // It is told which event it runs for; a new revision renames it (so it runs again) but hashes the same.
    expect(byKind(templates(renderChart(w, 7)), 'ConfigMap').data.STAGELINE_JOB_EVENT).toBe('DEPLOY');
    expect(renderChart(w, 8).configHash).toBe(renderChart(w, 7).configHash);
    const onStop = workloadFromJob({ ...SAMPLES[4]![1], trigger: control.Action.ACTION_STOP });
    expect(onStop.env.STAGELINE_JOB_EVENT).toBe('STOP');
  });

  it('a cron job is a CronJob in UTC; locally its job template runs as one pod with the output directory', () => {
    const list = templates(renderChart(workloadFromJob(SAMPLES[5]![1]), 1));
    const cron = byKind(list, 'CronJob');
    expect(cron.spec).toMatchObject({ schedule: '*/5 * * * *', timeZone: 'Etc/UTC', suspend: false });
    expect(cron.spec.jobTemplate.spec.backoffLimit).toBe(2);
    const plan = planLocalJob({
      environmentId: ENV_ID,
      manifests: list,
      runName: 't202601010005',
      outputDir: '/tmp/out',
      outputMountPath: '/stageline/output',
    });
    const pod = parse(plan.kubeYaml);
    expect(pod.kind).toBe('Pod');
    expect(plan.podName).toBe(`nightly-${environmentKey(ENV_ID)}-t202601010005`);
    expect(pod.spec.restartPolicy).toBe('Never');
    expect(pod.spec.volumes).toContainEqual({
      name: 'stageline-output',
      hostPath: { path: '/tmp/out', type: 'DirectoryOrCreate' },
    });
    expect(pod.spec.containers[0].volumeMounts).toContainEqual({
      name: 'stageline-output',
      mountPath: '/stageline/output',
    });
    expect(pod.spec.containers[0].env).toContainEqual({ name: 'TOKEN', value: 's3cret' });
    expect(plan).toMatchObject({ maxDurationSeconds: 120, maxRetries: 2 });
  });

  it('reads a job output: a JSON object of names to values; anything else fails the job', () => {
    expect(parseJobOutput('')).toEqual({});
    expect(parseJobOutput('{"API_KEY":"k-1","PORT":8080,"ON":true}')).toEqual({
      API_KEY: 'k-1',
      ON: 'true',
      PORT: '8080',
    });
    expect(() => parseJobOutput('[1]')).toThrow(/JSON object/);
    expect(() => parseJobOutput('{"not a name":"x"}')).toThrow(/environment variable name/);
    expect(() => parseJobOutput('{oops')).toThrow(/not JSON/);
  });
});

describe('cron schedules (5 fields, UTC, as Kubernetes CronJob)', () => {
  const at = (iso: string) => new Date(iso);
  it('fires on the minutes its fields select', () => {
    const every5 = parseCron('*/5 * * * *');
    expect(firesAt(every5, at('2026-01-01T10:05:00Z'))).toBe(true);
    expect(firesAt(every5, at('2026-01-01T10:06:00Z'))).toBe(false);
    const weekdays = parseCron('30 9 * * mon-fri');
    expect(firesAt(weekdays, at('2026-01-02T09:30:00Z'))).toBe(true); // a Friday
    expect(firesAt(weekdays, at('2026-01-03T09:30:00Z'))).toBe(false); // a Saturday
    // Both day fields restricted: either one matches (cron's rule).
    const either = parseCron('0 0 13 * 5');
    expect(firesAt(either, at('2026-02-13T00:00:00Z'))).toBe(true);
    expect(firesAt(either, at('2026-01-16T00:00:00Z'))).toBe(true);
    expect(firesAt(either, at('2026-01-14T00:00:00Z'))).toBe(false);
    expect(firesAt(parseCron('@hourly'), at('2026-01-01T07:00:00Z'))).toBe(true);
    expect(() => parseCron('* * * *')).toThrow(/5 fields/);
    expect(() => parseCron('60 * * * *')).toThrow(/minute/);
  });

  it('the due tick is the latest firing minute, within the starting deadline, never before the deploy', () => {
    const s = parseCron('*/5 * * * *');
    const deployed = at('2026-01-01T09:00:00Z');
    expect(dueTick(s, at('2026-01-01T10:07:30Z'), 300, deployed)).toEqual(at('2026-01-01T10:05:00Z'));
    // Missed by more than the deadline: not run late.
    expect(dueTick(s, at('2026-01-01T10:07:30Z'), 60, deployed)).toBeUndefined();
    // Deployed after the last firing minute: nothing due yet.
    expect(dueTick(s, at('2026-01-01T10:07:30Z'), 300, at('2026-01-01T10:06:00Z'))).toBeUndefined();
  });
});

describe('databases and custom charts', () => {
  it('connection details for later stages: host, port, user, password, database and URL, by service name', () => {
    expect(
      connectionOutputs(
        'orders-db',
        control.DatabaseEngine.DATABASE_ENGINE_POSTGRESQL,
        { host: 'host.containers.internal', port: 5433 },
        { username: 'sl_x', password: 'p/w+', database: 'sl_x' },
      ),
    ).toEqual({
      ORDERS_DB_HOST: 'host.containers.internal',
      ORDERS_DB_PORT: '5433',
      ORDERS_DB_USER: 'sl_x',
      ORDERS_DB_PASSWORD: 'p/w+',
      ORDERS_DB_DATABASE: 'sl_x',
      ORDERS_DB_URL: 'postgresql://sl_x:p%2Fw%2B@host.containers.internal:5433/sl_x',
    });
  });

  it('a custom chart records its reference and values; the image from the mirror is applied last', () => {
    expect(splitImage('127.0.0.1:5000/a/b:1.2@sha256:abc')).toEqual({
      repository: '127.0.0.1:5000/a/b',
      tag: '1.2@sha256:abc',
    });
    expect(splitImage('127.0.0.1:5000/a/b')).toEqual({ repository: '127.0.0.1:5000/a/b', tag: 'latest' });
    const j = deployJob({
      name: 'web',
      kind: ServiceKind.SERVICE_KIND_CONTAINER,
      source: container(),
      chart: {
        source: { $case: 'repository', value: { url: 'https://charts.example.com', name: 'nginx', version: '15.1.0' } },
        valuesYaml: 'replicaCount: 2\nimage:\n  repository: ignored\n',
      },
    });
    const chart = renderCustomChart(j, 4);
    const files = new Map(chart.files.map((f) => [f.path, f.content]));
    expect(JSON.parse(files.get('custom.json')!)).toEqual({
      type: 'repository',
      url: 'https://charts.example.com',
      name: 'nginx',
      version: '15.1.0',
    });
    expect(parse(files.get('values-overrides.yaml')!)).toEqual({ replicaCount: 2, image: { repository: 'ignored' } });
    expect(parse(files.get('values-stageline.yaml')!).image).toEqual({
      repository: '127.0.0.1:5000/demo/staging/svc',
      tag: `1.36@sha256:${'a'.repeat(64)}`,
    });
    expect(renderCustomChart(j, 5).configHash).toBe(chart.configHash);
    expect(() =>
      renderCustomChart(
        deployJob({ ...j.service, chart: { source: j.service!.chart!.source, valuesYaml: '- a list' } }),
        1,
      ),
    ).toThrow(/values_yaml/);
  });
});
