// Chart generation (pure): what a generated chart holds, without snapshots.

import { helmReleaseName } from '@stageline/policy';
import { bus, control } from '@stageline/proto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { escapeForHelm, type Manifest, renderChart, renderEscapedTemplate } from '../src/domain/chart.ts';
import { planLocal } from '../src/domain/local-plan.ts';
import { environmentKey, localNetworkName } from '../src/domain/names.ts';
import { workloadFromJob } from '../src/domain/workload.ts';

const ENV_ID = '0195f0a0-0000-7000-8000-000000000001';
const SERVICE_ID = '0195f0a0-0000-7000-8000-0000000000aa';

function job(overrides: Partial<control.Service> = {}, jobOverrides: Partial<bus.DeployJob> = {}): bus.DeployJob {
  return bus.DeployJob.fromPartial({
    jobId: 'job-1',
    deploymentId: 'dep-1',
    environmentId: ENV_ID,
    project: 'demo',
    environmentName: 'staging',
    action: control.Action.ACTION_DEPLOY,
    image: `127.0.0.1:5000/demo/staging/web@sha256:${'a'.repeat(64)}`,
    runtime: 'local',
    version: '1.36',
    service: control.Service.fromPartial({
      id: SERVICE_ID,
      environmentId: ENV_ID,
      name: 'web',
      kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
      source: {
        $case: 'container',
        value: {
          image: '127.0.0.1:5001/examples/busybox',
          tag: '1.36',
          ports: [
            { port: 8080, public: true },
            { port: 9090, public: false },
          ],
        },
      },
      envVars: [
        { key: 'GREETING', value: 'hello', secret: false },
        { key: 'API_TOKEN', value: 's3cret-value', secret: true },
      ],
      ...overrides,
    }),
    ...jobOverrides,
  });
}

function files(chart: ReturnType<typeof renderChart>): Map<string, string> {
  return new Map(chart.files.map((f) => [f.path, f.content]));
}

/** The manifests as Helm would install them: each template rendered (our escapes only), then parsed. */
function manifests(chart: ReturnType<typeof renderChart>): Manifest[] {
  return chart.files
    .filter((f) => f.path.startsWith('templates/'))
    .flatMap((f) => parseAllDocuments(renderEscapedTemplate(f.path, f.content)).map((d) => d.toJS() as Manifest));
}

// Manifests are read as untyped trees: the assertions are the schema.
// biome-ignore lint/suspicious/noExplicitAny: see above
type Tree = any;

function byKind(list: Manifest[], kind: string): Tree {
  const found = list.find((m) => m.kind === kind);
  expect(found, kind).toBeDefined();
  return found as Tree;
}

describe('chart generation', () => {
  it('is a Helm chart directory: Chart.yaml (v2, SemVer), values.yaml with the inputs, rendered templates', () => {
    const chart = renderChart(workloadFromJob(job()), 3);
    const f = files(chart);
    expect([...f.keys()].sort()).toEqual([
      'Chart.yaml',
      'templates/configmap.yaml',
      'templates/deployment.yaml',
      'templates/secret.yaml',
      'templates/service.yaml',
      'values.yaml',
    ]);
    const chartYaml = parse(f.get('Chart.yaml')!);
    expect(chartYaml).toMatchObject({ apiVersion: 'v2', name: 'web', type: 'application', appVersion: '1.36' });
    expect(chartYaml.version).toMatch(/^\d+\.\d+\.\d+$/);
    const values = parse(f.get('values.yaml')!);
    expect(values).toMatchObject({
      revision: 3,
      image: job().image,
      env: { GREETING: 'hello' },
      secretEnvKeys: ['API_TOKEN'],
      ports: [
        { port: 8080, public: true },
        { port: 9090, public: false },
      ],
      resources: { requests: { cpu: expect.any(String), memory: expect.any(String) } },
    });
    // Secret values stay out of values.yaml; templates carry no Helm directive but the `{{` escape.
    expect(f.get('values.yaml')).not.toContain('s3cret-value');
    for (const [path, content] of f) {
      if (path.startsWith('templates/')) expect(content.replaceAll('{{"{{"}}', '')).not.toContain('{{');
    }
  });

  it('renders Deployment, Service, ConfigMap and Secret with the labels and the service name', () => {
    const list = manifests(renderChart(workloadFromJob(job()), 1));
    expect(list.map((m) => m.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'Secret', 'Service']);
    for (const m of list) {
      expect(m.metadata.labels).toMatchObject({
        'app.kubernetes.io/name': 'web',
        'app.kubernetes.io/instance': helmReleaseName(ENV_ID, 'web'),
        'stageline.io/environment-id': ENV_ID,
        'stageline.io/service-id': SERVICE_ID,
      });
    }
    const deployment = byKind(list, 'Deployment');
    expect(deployment.apiVersion).toBe('apps/v1');
    expect(deployment.metadata.name).toBe('web');
    expect(deployment.spec.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' },
    });
    expect(deployment.spec.selector.matchLabels).toEqual({
      'app.kubernetes.io/name': 'web',
      'app.kubernetes.io/instance': helmReleaseName(ENV_ID, 'web'),
    });
    expect(deployment.spec.template.metadata.labels).toMatchObject(deployment.spec.selector.matchLabels);
    const container = deployment.spec.template.spec.containers[0];
    expect(container.image).toBe(job().image);
    expect(container.ports.map((p: { containerPort: number }) => p.containerPort)).toEqual([8080, 9090]);

    const service = byKind(list, 'Service');
    expect(service.metadata.name).toBe('web');
    expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
    expect(service.spec.ports.map((p: { port: number }) => p.port)).toEqual([8080, 9090]);
    expect(service.metadata.annotations['stageline.io/public-ports']).toBe('8080');
  });

  it('splits env vars: plain ones into the ConfigMap, secret ones base64 into an Opaque Secret, referenced by key', () => {
    const list = manifests(
      renderChart(workloadFromJob(job({}, { injectedEnv: { DATABASE_URL: 'postgres://u:p@db/x' } })), 1),
    );
    const configMap = byKind(list, 'ConfigMap');
    expect(configMap.data).toEqual({ GREETING: 'hello' });
    const secret = byKind(list, 'Secret');
    expect(secret.type).toBe('Opaque');
    expect(secret.data).toEqual({
      API_TOKEN: Buffer.from('s3cret-value').toString('base64'),
      DATABASE_URL: Buffer.from('postgres://u:p@db/x').toString('base64'),
    });
    // No plain secret value anywhere in the templates.
    for (const m of list) expect(JSON.stringify(m)).not.toContain('s3cret-value');
    const env = byKind(list, 'Deployment').spec.template.spec.containers[0].env;
    expect(env).toEqual([
      { name: 'GREETING', valueFrom: { configMapKeyRef: { name: configMap.metadata.name, key: 'GREETING' } } },
      { name: 'API_TOKEN', valueFrom: { secretKeyRef: { name: secret.metadata.name, key: 'API_TOKEN' } } },
      { name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: secret.metadata.name, key: 'DATABASE_URL' } } },
    ]);
  });

  it('omits the ConfigMap, Secret and Service when there is nothing to put in them', () => {
    const list = manifests(
      renderChart(
        workloadFromJob(
          job({ envVars: [], source: { $case: 'container', value: { image: 'x', tag: '1', ports: [] } } }),
        ),
        1,
      ),
    );
    expect(list.map((m) => m.kind)).toEqual(['Deployment']);
    // No ports and no health check: nothing to probe ("running" is ready).
    const container = byKind(list, 'Deployment').spec.template.spec.containers[0];
    expect(container.readinessProbe).toBeUndefined();
    expect(container.livenessProbe).toBeUndefined();
  });

  it('probes TCP on the first port by default, for readiness, liveness and startup', () => {
    const container = byKind(manifests(renderChart(workloadFromJob(job()), 1)), 'Deployment').spec.template.spec
      .containers[0];
    for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
      expect(container[probe].tcpSocket, probe).toEqual({ port: 8080 });
    }
    expect(container.readinessProbe.periodSeconds).toBe(2);
    // Startup may take the whole readiness timeout (default 300 s) before liveness takes over.
    expect(container.startupProbe.periodSeconds * container.startupProbe.failureThreshold).toBe(300);
  });

  it('takes the probe from the health check: HTTP, TCP or exec, with its delay and period', () => {
    const render = (healthCheck: control.HealthCheck, readinessTimeoutSeconds = 30) =>
      byKind(manifests(renderChart(workloadFromJob(job({ healthCheck, readinessTimeoutSeconds })), 1)), 'Deployment')
        .spec.template.spec.containers[0];
    const http = render(
      control.HealthCheck.fromPartial({
        probe: { $case: 'http', value: { path: '/healthz', port: 9090 } },
        initialDelaySeconds: 4,
        periodSeconds: 5,
      }),
    );
    expect(http.readinessProbe).toMatchObject({
      httpGet: { path: '/healthz', port: 9090 },
      initialDelaySeconds: 4,
      periodSeconds: 5,
    });
    expect(http.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: 9090 });
    expect(http.startupProbe.failureThreshold).toBe(6);
    // HTTP without path or port: "/" on the first port.
    expect(
      render(control.HealthCheck.fromPartial({ probe: { $case: 'http', value: {} } })).readinessProbe.httpGet,
    ).toMatchObject({ path: '/', port: 8080 });
    expect(
      render(control.HealthCheck.fromPartial({ probe: { $case: 'tcp', value: { port: 9090 } } })).readinessProbe,
    ).toMatchObject({ tcpSocket: { port: 9090 } });
    expect(
      render(control.HealthCheck.fromPartial({ probe: { $case: 'exec', value: { command: ['cat', '/ready'] } } }))
        .readinessProbe,
    ).toMatchObject({ exec: { command: ['cat', '/ready'] } });
  });

  it('gives a container database a StatefulSet with a volume claim template, its credentials as a Secret', () => {
    const list = manifests(
      renderChart(
        workloadFromJob(
          job({
            name: 'cache',
            kind: control.ServiceKind.SERVICE_KIND_DATABASE,
            envVars: [],
            source: {
              $case: 'database',
              value: {
                engine: control.DatabaseEngine.DATABASE_ENGINE_POSTGRESQL,
                version: '16',
                mode: control.DatabaseMode.DATABASE_MODE_CONTAINER,
                image: '',
              },
            },
          }),
          { database: { username: 'app', password: 'pw-123', database: 'appdb' } },
        ),
        1,
      ),
    );
    expect(list.map((m) => m.kind).sort()).toEqual(['Secret', 'Service', 'StatefulSet']);
    const set = byKind(list, 'StatefulSet');
    expect(set.spec.serviceName).toBe('cache');
    expect(set.spec.replicas).toBe(1);
    expect(set.spec.volumeClaimTemplates).toEqual([
      expect.objectContaining({
        metadata: expect.objectContaining({ name: 'data' }),
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      }),
    ]);
    const container = set.spec.template.spec.containers[0];
    expect(container.volumeMounts).toEqual([{ name: 'data', mountPath: '/var/lib/postgresql/data' }]);
    expect(container.env.map((e: { name: string }) => e.name)).toEqual([
      'PGDATA',
      'POSTGRES_DB',
      'POSTGRES_PASSWORD',
      'POSTGRES_USER',
    ]);
    expect(Buffer.from(byKind(list, 'Secret').data.POSTGRES_PASSWORD, 'base64').toString()).toBe('pw-123');
    expect(byKind(list, 'Service').spec.ports[0].port).toBe(5432);
  });

  it('changes the config hash iff the rendered inputs change', () => {
    const hash = (j: bus.DeployJob, revision = 1) => renderChart(workloadFromJob(j), revision).configHash;
    const base = hash(job());
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    // Same inputs, another revision or job: same hash.
    expect(hash(job(), 7)).toBe(base);
    expect(hash(job({}, { jobId: 'other', deploymentId: 'other' }))).toBe(base);
    // The version is recorded (values.yaml, Chart.yaml), not applied.
    expect(hash(job({}, { version: '9.9' }))).toBe(base);
    const changed = [
      job({}, { image: `127.0.0.1:5000/demo/staging/web@sha256:${'b'.repeat(64)}` }),
      job({
        envVars: [
          { key: 'GREETING', value: 'bonjour', secret: false },
          { key: 'API_TOKEN', value: 's3cret-value', secret: true },
        ],
      }),
      job({
        envVars: [
          { key: 'GREETING', value: 'hello', secret: false },
          { key: 'API_TOKEN', value: 'other', secret: true },
        ],
      }),
      job({ readinessTimeoutSeconds: 42 }),
      job({ healthCheck: control.HealthCheck.fromPartial({ probe: { $case: 'tcp', value: { port: 9090 } } }) }),
      job({ source: { $case: 'container', value: { image: 'x', tag: '1', ports: [{ port: 8080, public: false }] } } }),
      job({}, { injectedEnv: { EXTRA: '1' } }),
    ];
    const hashes = changed.map((j) => hash(j));
    for (const h of hashes) expect(h).not.toBe(base);
    expect(new Set(hashes).size).toBe(hashes.length);
  });

  it('refuses what it cannot render, naming the field', () => {
    expect(() => workloadFromJob(job({ name: 'Not_A_Label' }))).toThrow(/service.name/);
    expect(() => workloadFromJob(job({}, { image: '' }))).toThrow(/image/);
    expect(() => workloadFromJob(job({ kind: control.ServiceKind.SERVICE_KIND_CRON_JOB }))).toThrow(/service.job/);
    expect(() =>
      workloadFromJob(
        job({
          kind: control.ServiceKind.SERVICE_KIND_CRON_JOB,
          source: { $case: 'job', value: control.JobSource.fromPartial({ schedule: '61 * * * *' }) },
        }),
      ),
    ).toThrow(/service.job.schedule/);
    expect(() => workloadFromJob(job({ envVars: [{ key: 'BAD KEY', value: '1', secret: false }] }))).toThrow(
      /env_vars\[0\]/,
    );
  });

  it('keeps Helm release names within 53 characters, and per environment (issue 21)', () => {
    const long = 'a'.repeat(63);
    expect(helmReleaseName('env-1', 'web')).toMatch(/^web-[0-9a-f]{12}$/);
    expect(helmReleaseName('env-1', 'web')).not.toBe(helmReleaseName('env-2', 'web'));
    expect(helmReleaseName('env-1', long).length).toBeLessThanOrEqual(53);
    expect(helmReleaseName('env-1', long)).not.toBe(helmReleaseName('env-1', `${'a'.repeat(62)}b`));
  });
});

describe('local translation for podman kube play', () => {
  it('inlines ConfigMap and Secret values, publishes public ports on 127.0.0.1 and drops probes', () => {
    const chart = renderChart(workloadFromJob(job({}, { injectedEnv: { DATABASE_URL: 'postgres://db' } })), 1);
    const plan = planLocal({ environmentId: ENV_ID, manifests: manifests(chart), hostPorts: new Map([[8080, 41234]]) });
    const docs = parseAllDocuments(plan.kubeYaml).map((d) => d.toJS() as Tree);
    // kube play runs only Deployments (and Pods, PVCs): nothing else is handed to it.
    expect(docs.map((d) => d.kind)).toEqual(['Deployment']);
    const deployment = docs[0]!;
    const key = environmentKey(ENV_ID);
    expect(deployment.metadata.name).toBe(`web-${key}`);
    expect(plan.podName).toBe(`web-${key}-pod-0`);
    expect(plan.containerName).toBe(`web-${key}-pod-0-web`);
    expect(plan.network).toBe(localNetworkName(ENV_ID));
    const pod = deployment.spec.template.spec;
    expect(pod.hostname).toBe('web');
    expect(pod.shareProcessNamespace).toBe(true);
    const container = pod.containers[0];
    expect(container.env).toEqual([
      { name: 'GREETING', value: 'hello' },
      { name: 'API_TOKEN', value: 's3cret-value' },
      { name: 'DATABASE_URL', value: 'postgres://db' },
    ]);
    expect(container.ports).toEqual([{ containerPort: 8080, hostPort: 41234, hostIP: '127.0.0.1', protocol: 'TCP' }]);
    expect(container.readinessProbe).toBeUndefined();
    expect(container.livenessProbe).toBeUndefined();
    expect(container.startupProbe).toBeUndefined();
    expect(plan.probe).toEqual({ type: 'tcp', port: 8080 });
    expect(plan.published).toEqual([{ containerPort: 8080, hostPort: 41234 }]);
    expect(plan.readinessTimeoutSeconds).toBe(300);
  });
});

describe('no user string is ever evaluated by Helm', () => {
  const LOOKUP = '{{ lookup "v1" "Secret" "kube-system" "" }}';
  const payloads = [LOOKUP, '{{', '}}', '{{- .Values -}}', '{{"{{"}}', `a ${LOOKUP} b {{ {{`];

  it('every `{{` of a template is the escape action; Helm renders back exactly the text', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('{', '}', '"', '-', 'a', ' ', '/', '*') }), (text) => {
        const escaped = escapeForHelm(text);
        expect(escaped.replaceAll('{{"{{"}}', '')).not.toContain('{{');
        expect(renderEscapedTemplate('t.yaml', escaped)).toBe(text);
      }),
      { numRuns: 500 },
    );
    expect(() => renderEscapedTemplate('t.yaml', `x: ${LOOKUP}`)).toThrow(/t.yaml: a template action other than/);
  });

  it('user strings in every free-text field reach the manifests literally, and templates hold no other action', () => {
    for (const payload of payloads) {
      const service = {
        envVars: [
          { key: 'PLAIN', value: payload, secret: false },
          { key: 'SECRET', value: payload, secret: true },
        ],
        healthCheck: {
          probe: { $case: 'exec' as const, value: { command: ['sh', '-c', payload] } },
          initialDelaySeconds: 0,
          periodSeconds: 0,
        },
      };
      const chart = renderChart(workloadFromJob(job(service)), 1);
      for (const f of chart.files.filter((x) => x.path.startsWith('templates/'))) {
        expect(f.content.replaceAll('{{"{{"}}', ''), f.path).not.toContain('{{');
      }
      const list = manifests(chart);
      expect(byKind(list, 'ConfigMap').data.PLAIN).toBe(payload);
      const secret = byKind(list, 'Secret');
      const secretValue =
        secret.stringData?.SECRET ?? Buffer.from(String(secret.data?.SECRET ?? ''), 'base64').toString('utf8');
      expect(secretValue).toBe(payload);
      const container = byKind(list, 'Deployment').spec.template.spec.containers[0];
      expect(container.readinessProbe.exec.command).toEqual(['sh', '-c', payload]);
    }
  });
});
