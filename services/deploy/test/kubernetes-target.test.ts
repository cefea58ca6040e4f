// What a real cluster needs of the kubernetes target (issue 27), checked without one: charts rendered for
// it (the mirror's pull address, its pull secret, public ports exposed) validated against the Kubernetes
// schemas; and the runtime through a recording runner — the pull secret applied per namespace, endpoints
// read from recorded `kubectl get -o json` of each Service type and Ingress, custom charts restarted by
// their release's own resources, helm 3 and helm 4 flags from a version detected once.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DomainError } from '@stageline/errors';
import { helmReleaseName } from '@stageline/policy';
import { bus, control } from '@stageline/proto';
import fc from 'fast-check';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1';
import { Namespace, Secret, Service } from 'kubernetes-models/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { FsChartStore } from '../src/adapters/fs/chart-store.ts';
import { KubernetesRuntime } from '../src/adapters/kubernetes/helm-runtime.ts';
import type { RuntimeContext } from '../src/app/ports.ts';
import { type Manifest, renderChart } from '../src/domain/chart.ts';
import { renderCustomChart } from '../src/domain/custom-chart.ts';
import { RolloutError } from '../src/domain/failures.ts';
import {
  endpointsFromIngress,
  endpointsFromService,
  exposureOf,
  MIRROR_PULL_SECRET,
  pullImage,
} from '../src/domain/kube-target.ts';
import type { Release } from '../src/domain/release.ts';
import { type KubernetesTarget, workloadFromJob } from '../src/domain/workload.ts';
import { RecordingRunner, secrets } from './support.ts';

const ENV_ID = '0195f0a0-0000-7000-8000-000000000027';
const PUSH = '127.0.0.1:5000';
const PULL = 'registry.cluster.internal:5000';
const IMAGE = `${PUSH}/demo/staging/web:1.36@sha256:${'b'.repeat(64)}`;
const NS = 'demo-staging';
const CTX = 'kind-stageline';
const WEB = helmReleaseName(ENV_ID, 'web');
const { ExposureType } = control;

// biome-ignore lint/suspicious/noExplicitAny: manifests are read as untyped trees; the assertions are the schema.
type Tree = any;

const MODELS: Record<string, { new (data: never): { validate(): void } }> = {
  'apps/v1/Deployment': Deployment as never,
  'networking.k8s.io/v1/Ingress': Ingress as never,
  'v1/Namespace': Namespace as never,
  'v1/Secret': Secret as never,
  'v1/Service': Service as never,
};

/** Validates against the Kubernetes schema of its apiVersion and kind; throws with the schema's complaint. */
function validate(m: { apiVersion: string; kind: string }): void {
  const Model = MODELS[`${m.apiVersion}/${m.kind}`];
  if (Model === undefined) throw new Error(`no schema for ${m.apiVersion}/${m.kind}`);
  new Model(m as never).validate();
}

function job(exposure?: Partial<control.Exposure>, extra: Partial<bus.DeployJob> = {}): bus.DeployJob {
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
      id: 'svc-web',
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
            { port: 8443, public: true },
          ],
        },
      },
    }),
    ...(exposure !== undefined ? { exposure: control.Exposure.fromPartial(exposure) } : {}),
    ...extra,
  });
}

const TARGET: KubernetesTarget = { mirror: { push: PUSH, pull: PULL }, pullSecret: true };

/** The chart's templates as Helm installs them (ours carry no action but the `{{` escape), each schema-valid. */
function templates(chart: ReturnType<typeof renderChart>): Manifest[] {
  const list = chart.files
    .filter((f) => f.path.startsWith('templates/'))
    .flatMap((f) => parseAllDocuments(f.content).map((d) => d.toJS() as Manifest));
  for (const m of list) expect(() => validate(m), `${m.kind} ${m.metadata.name}`).not.toThrow();
  return list;
}

const byName = (list: Manifest[], kind: string, name: string): Tree =>
  list.find((m) => m.kind === kind && m.metadata.name === name);

describe('charts for a cluster (schema-validated)', () => {
  it("names the image at the mirror's pull address, and the namespace's pull secret when the mirror is authenticated", () => {
    const list = templates(renderChart(workloadFromJob(job(), { kubernetes: TARGET }), 1));
    const pod = byName(list, 'Deployment', 'web').spec.template.spec;
    expect(pod.containers[0].image).toBe(`${PULL}/demo/staging/web:1.36@sha256:${'b'.repeat(64)}`);
    expect(pod.imagePullSecrets).toEqual([{ name: MIRROR_PULL_SECRET }]);

    // An anonymous mirror: no pull secret named (a missing Secret would fail every pull).
    const anonymous = templates(
      renderChart(workloadFromJob(job(), { kubernetes: { ...TARGET, pullSecret: false } }), 1),
    );
    expect(byName(anonymous, 'Deployment', 'web').spec.template.spec.imagePullSecrets).toBeUndefined();

    // The local runtime pulls from the push address itself, and publishes ports its own way.
    const local = templates(renderChart(workloadFromJob(job({ type: ExposureType.EXPOSURE_TYPE_NODE_PORT })), 1));
    expect(byName(local, 'Deployment', 'web').spec.template.spec.containers[0].image).toBe(IMAGE);
    expect(local.map((m) => `${m.kind}/${m.metadata.name}`).sort()).toEqual(['Deployment/web', 'Service/web']);
  });

  it('gives a custom chart the pulled image and the pull secret as values', () => {
    const custom = job(undefined, {
      service: control.Service.fromPartial({
        ...job().service,
        chart: {
          source: { $case: 'repository', value: { url: 'https://charts.example.com', name: 'web', version: '1.0.0' } },
        },
      }),
    });
    const values = parse(
      renderCustomChart(custom, 1, TARGET).files.find((f) => f.path === 'values-stageline.yaml')!.content,
    );
    expect(values.image).toEqual({ repository: `${PULL}/demo/staging/web`, tag: `1.36@sha256:${'b'.repeat(64)}` });
    expect(values.imagePullSecrets).toEqual([{ name: MIRROR_PULL_SECRET }]);
  });

  it('keeps public ports inside the cluster by default: one ClusterIP Service', () => {
    const list = templates(renderChart(workloadFromJob(job(), { kubernetes: TARGET }), 1));
    expect(list.map((m) => `${m.kind}/${m.metadata.name}`).sort()).toEqual(['Deployment/web', 'Service/web']);
    expect(byName(list, 'Service', 'web').spec.type).toBe('ClusterIP');
  });

  it.each([
    [ExposureType.EXPOSURE_TYPE_NODE_PORT, 'NodePort'],
    [ExposureType.EXPOSURE_TYPE_LOAD_BALANCER, 'LoadBalancer'],
  ] as const)('exposes the public ports (only) as a Service of type %s beside the ClusterIP one', (type, kubeType) => {
    const chart = renderChart(workloadFromJob(job({ type }), { kubernetes: TARGET }), 1);
    expect(chart.files.map((f) => f.path)).toContain('templates/service-public.yaml');
    const list = templates(chart);
    const cluster = byName(list, 'Service', 'web');
    const exposed = byName(list, 'Service', 'web-public');
    expect(cluster.spec.type).toBe('ClusterIP');
    expect(exposed.spec.type).toBe(kubeType);
    expect(exposed.spec.selector).toEqual(cluster.spec.selector);
    expect(exposed.spec.ports).toEqual([
      { name: 'tcp-8080', port: 8080, targetPort: 'tcp-8080', protocol: 'TCP' },
      { name: 'tcp-8443', port: 8443, targetPort: 'tcp-8443', protocol: 'TCP' },
    ]);
  });

  it('exposes the public ports through an Ingress: a host per port under the domain, its class and TLS secret', () => {
    const list = templates(
      renderChart(
        workloadFromJob(
          job({
            type: ExposureType.EXPOSURE_TYPE_INGRESS,
            ingressDomain: 'staging.example.com',
            ingressClass: 'nginx',
            tlsSecret: 'staging-wildcard',
          }),
          { kubernetes: TARGET },
        ),
        1,
      ),
    );
    const ingress = byName(list, 'Ingress', 'web');
    expect(ingress.spec.ingressClassName).toBe('nginx');
    expect(ingress.spec.tls).toEqual([
      { hosts: ['web.staging.example.com', 'web-8443.staging.example.com'], secretName: 'staging-wildcard' },
    ]);
    expect(ingress.spec.rules).toEqual([
      {
        host: 'web.staging.example.com',
        http: {
          paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { name: 'tcp-8080' } } } }],
        },
      },
      {
        host: 'web-8443.staging.example.com',
        http: {
          paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { name: 'tcp-8443' } } } }],
        },
      },
    ]);
    // Its backends are ports the ClusterIP Service has.
    expect(byName(list, 'Service', 'web').spec.ports.map((p: { name: string }) => p.name)).toEqual([
      'tcp-8080',
      'tcp-9090',
      'tcp-8443',
    ]);
    // No class and no secret: the cluster's default class, plain HTTP.
    const plain = templates(
      renderChart(
        workloadFromJob(job({ type: ExposureType.EXPOSURE_TYPE_INGRESS, ingressDomain: 'example.com' }), {
          kubernetes: TARGET,
        }),
        1,
      ),
    );
    expect(byName(plain, 'Ingress', 'web').spec.ingressClassName).toBeUndefined();
    expect(byName(plain, 'Ingress', 'web').spec.tls).toBeUndefined();
  });

  it('refuses an exposure that does not fit its type, naming the field', () => {
    const cases: Array<[Partial<control.Exposure>, string]> = [
      [{ type: ExposureType.EXPOSURE_TYPE_INGRESS }, 'exposure.ingress_domain'],
      [{ type: ExposureType.EXPOSURE_TYPE_INGRESS, ingressDomain: 'Bad_Domain' }, 'exposure.ingress_domain'],
      [{ type: ExposureType.EXPOSURE_TYPE_INGRESS, ingressDomain: 'a.b', tlsSecret: 'x y' }, 'exposure.tls_secret'],
      [{ type: ExposureType.EXPOSURE_TYPE_NODE_PORT, ingressDomain: 'a.b' }, 'exposure.ingress_domain'],
      [{ type: 42 as control.ExposureType }, 'exposure.type'],
    ];
    for (const [exposure, field] of cases) {
      const error = (() => {
        try {
          exposureOf(control.Exposure.fromPartial(exposure));
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(error, JSON.stringify(exposure)).toBeInstanceOf(DomainError);
      expect((error as DomainError).code).toBe('INVALID_ARGUMENT');
      expect((error as DomainError).field).toBe(field);
    }
  });

  it('rewrites only images in the mirror: any other reference is pulled as it is', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z0-9][a-z0-9/._-]{0,40}$/),
        fc.stringMatching(/^[a-z0-9.]{1,20}:[0-9]{2,5}$/),
        (repository, other) => {
          const mirror = { push: PUSH, pull: PULL };
          expect(pullImage(`${PUSH}/${repository}`, mirror)).toBe(`${PULL}/${repository}`);
          if (other !== PUSH) expect(pullImage(`${other}/${repository}`, mirror)).toBe(`${other}/${repository}`);
          // A host that merely starts like the mirror's is another registry.
          expect(pullImage(`${PUSH}0/${repository}`, mirror)).toBe(`${PUSH}0/${repository}`);
        },
      ),
    );
  });
});

describe('endpoints read back from the cluster (recorded kubectl get -o json)', () => {
  const service = (type: string, ports: object[], status: object = {}) =>
    JSON.stringify({ kind: 'Service', metadata: { name: 'web-public' }, spec: { type, ports }, status });

  it('NodePort: a node address and each node port', () => {
    const json = service('NodePort', [
      { name: 'tcp-8080', port: 8080, targetPort: 'tcp-8080', nodePort: 31080 },
      { name: 'tcp-8443', port: 8443, targetPort: 'tcp-8443', nodePort: 31443 },
    ]);
    expect(endpointsFromService(json, '172.18.0.2')).toEqual([
      { port: 8080, url: 'http://172.18.0.2:31080' },
      { port: 8443, url: 'http://172.18.0.2:31443' },
    ]);
    expect(endpointsFromService(json, undefined)).toEqual([]);
  });

  it('LoadBalancer: the assigned address (IP or host name), nothing while pending', () => {
    const ports = [{ name: 'tcp-8080', port: 8080, targetPort: 'tcp-8080', nodePort: 31080 }];
    expect(
      endpointsFromService(
        service('LoadBalancer', ports, { loadBalancer: { ingress: [{ ip: '203.0.113.7' }] } }),
        undefined,
      ),
    ).toEqual([{ port: 8080, url: 'http://203.0.113.7:8080' }]);
    expect(
      endpointsFromService(
        service('LoadBalancer', ports, { loadBalancer: { ingress: [{ hostname: 'lb.example.com' }] } }),
        undefined,
      ),
    ).toEqual([{ port: 8080, url: 'http://lb.example.com:8080' }]);
    expect(endpointsFromService(service('LoadBalancer', ports, { loadBalancer: {} }), undefined)).toEqual([]);
  });

  it('Ingress: https for the hosts its TLS covers, http for the others', () => {
    const ingress = {
      kind: 'Ingress',
      spec: {
        tls: [{ hosts: ['web.example.com'], secretName: 'tls' }],
        rules: [
          {
            host: 'web.example.com',
            http: { paths: [{ backend: { service: { name: 'web', port: { name: 'tcp-8080' } } } }] },
          },
          {
            host: 'web-8443.example.com',
            http: { paths: [{ backend: { service: { name: 'web', port: { number: 8443 } } } }] },
          },
        ],
      },
    };
    expect(endpointsFromIngress(JSON.stringify(ingress))).toEqual([
      { port: 8080, url: 'https://web.example.com/' },
      { port: 8443, url: 'http://web-8443.example.com/' },
    ]);
  });
});

// --- the runtime ------------------------------------------------------------------------------------

let dir: string;
let store: FsChartStore;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'deploy-k8s-target-'));
  store = new FsChartStore(dir, secrets);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function context(): RuntimeContext & { lines: string[] } {
  const lines: string[] = [];
  return { signal: new AbortController().signal, lines, output: (l) => lines.push(l), working: () => {} };
}

async function release(
  exposure: Partial<control.Exposure> | undefined,
  overrides: Partial<Release> = {},
): Promise<Release> {
  const chartPath = await store.write(
    { environmentId: ENV_ID, serviceId: `svc-${exposure?.type ?? 0}-${overrides.revision ?? 1}`, revision: 1 },
    renderChart(workloadFromJob(job(exposure), { kubernetes: TARGET }), 1),
  );
  const now = new Date();
  return {
    id: 'r1',
    serviceId: 'svc-web',
    serviceName: 'web',
    environmentId: ENV_ID,
    revision: 1,
    deploymentId: 'd',
    jobId: 'j',
    runtime: 'kubernetes',
    namespace: NS,
    kubeContext: CTX,
    image: IMAGE,
    digest: '',
    version: '1.36',
    configHash: 'h',
    chartPath,
    status: 'DEPLOYED',
    message: '',
    hostPorts: [],
    endpoints: [],
    readinessTimeoutSeconds: 60,
    runtimeRevision: 1,
    kind: 'CONTAINER',
    schedule: '',
    createdAt: now,
    updatedAt: now,
    ...overrides,
  };
}

const kubectlTarget = ['--namespace', NS, '--context', CTX];
const helmTarget = ['--namespace', NS, '--kube-context', CTX];

describe('the kubernetes runtime on a cluster (recorded argv)', () => {
  it("applies the mirror's pull secret to the namespace before helm installs, from a file it removes", async () => {
    const runner = new RecordingRunner();
    let applied: Tree;
    let file = '';
    // The file exists while kubectl runs: read it then.
    const run = runner.run.bind(runner);
    runner.run = async (command, args, options) => {
      if (command === 'kubectl' && args[0] === 'apply') {
        file = args[2]!;
        applied = JSON.parse(await readFile(file, 'utf8'));
      }
      return run(command, args, options);
    };
    const runtime = new KubernetesRuntime({
      runner,
      charts: store,
      mirror: { push: PUSH, pull: { '': 'elsewhere:5000', [CTX]: PULL } },
      mirrorCredentials: { username: 'puller', password: 'pull-s3cret' },
    });
    await runtime.apply(await release(undefined), context());
    expect(runner.calls.map((c) => `${c.command} ${c.args[0]}`)).toEqual([
      'kubectl apply',
      'helm upgrade',
      'helm history',
    ]);
    expect(runner.calls[0]!.args).toEqual(['apply', '--filename', file, ...kubectlTarget]);
    // The password is in the file, never in an argument (argv is visible to every user of the host).
    expect(runner.calls.flatMap((c) => c.args).join(' ')).not.toContain('pull-s3cret');
    await expect(readFile(file)).rejects.toThrow(/ENOENT/);

    expect(applied.kind).toBe('List');
    const [namespace, secret] = applied.items;
    expect(namespace).toEqual({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    validate(namespace);
    validate(secret);
    expect(secret.type).toBe('kubernetes.io/dockerconfigjson');
    expect(secret.metadata.name).toBe(MIRROR_PULL_SECRET);
    const config = JSON.parse(Buffer.from(secret.data['.dockerconfigjson'], 'base64').toString());
    // The address the context's nodes pull from, with the credentials.
    expect(Object.keys(config.auths)).toEqual([PULL]);
    expect(Buffer.from(config.auths[PULL].auth, 'base64').toString()).toBe('puller:pull-s3cret');

    // An anonymous mirror: nothing applied besides the release.
    const anonymous = new RecordingRunner();
    await new KubernetesRuntime({ runner: anonymous, charts: store }).apply(await release(undefined), context());
    expect(anonymous.calls.map((c) => `${c.command} ${c.args[0]}`)).toEqual(['helm upgrade', 'helm history']);
    // The render target follows the context: its own pull address, else the default one.
    expect(runtime.kubernetesTarget(CTX).mirror).toEqual({ push: PUSH, pull: PULL });
    expect(runtime.kubernetesTarget('other').mirror).toEqual({ push: PUSH, pull: 'elsewhere:5000' });
  });

  it('reads the endpoints of a NodePort, LoadBalancer and Ingress exposure after the rollout', async () => {
    const answers = (runner: RecordingRunner) =>
      runner.answer((command, args) => {
        if (command !== 'kubectl' || args[0] !== 'get') return undefined;
        const reply = (o: object) => ({ exitCode: 0, stdout: JSON.stringify(o), stderr: '' });
        if (args[1] === 'nodes') {
          return reply({
            items: [
              {
                status: {
                  addresses: [
                    { type: 'Hostname', address: 'n1' },
                    { type: 'InternalIP', address: '172.18.0.2' },
                  ],
                },
              },
            ],
          });
        }
        if (args[1] === 'service') {
          const type = runner === nodePort ? 'NodePort' : 'LoadBalancer';
          return reply({
            spec: { type, ports: [{ name: 'tcp-8080', port: 8080, targetPort: 'tcp-8080', nodePort: 30080 }] },
            status: type === 'LoadBalancer' ? { loadBalancer: { ingress: [{ ip: '198.51.100.4' }] } } : {},
          });
        }
        if (args[1] === 'ingress') {
          return reply({
            spec: {
              rules: [
                {
                  host: 'web.apps.example.com',
                  http: { paths: [{ backend: { service: { port: { name: 'tcp-8080' } } } }] },
                },
              ],
            },
          });
        }
        return undefined;
      });
    const nodePort = new RecordingRunner();
    const loadBalancer = new RecordingRunner();
    const ingress = new RecordingRunner();
    for (const r of [nodePort, loadBalancer, ingress]) answers(r);
    const apply = async (runner: RecordingRunner, exposure: Partial<control.Exposure>) =>
      new KubernetesRuntime({ runner, charts: store }).apply(await release(exposure), context());

    const np = await apply(nodePort, { type: ExposureType.EXPOSURE_TYPE_NODE_PORT });
    expect(np.endpoints).toEqual([{ port: 8080, url: 'http://172.18.0.2:30080' }]);
    expect(nodePort.calls.filter((c) => c.command === 'kubectl').map((c) => c.args)).toEqual([
      ['get', 'service', 'web-public', ...kubectlTarget, '--output', 'json'],
      ['get', 'nodes', '--context', CTX, '--output', 'json'],
    ]);

    const lb = await apply(loadBalancer, { type: ExposureType.EXPOSURE_TYPE_LOAD_BALANCER });
    expect(lb.endpoints).toEqual([{ port: 8080, url: 'http://198.51.100.4:8080' }]);

    const ing = await apply(ingress, { type: ExposureType.EXPOSURE_TYPE_INGRESS, ingressDomain: 'apps.example.com' });
    expect(ing.endpoints).toEqual([{ port: 8080, url: 'http://web.apps.example.com/' }]);
    expect(ingress.calls.filter((c) => c.command === 'kubectl').map((c) => c.args)).toEqual([
      ['get', 'ingress', 'web', ...kubectlTarget, '--output', 'json'],
    ]);

    // Inside the cluster only: nothing to read, no endpoint.
    const clusterIp = new RecordingRunner();
    expect((await apply(clusterIp, {})).endpoints).toEqual([]);
    expect(clusterIp.calls.filter((c) => c.command === 'kubectl')).toEqual([]);
  });

  it('keeps a rollout whose endpoints cannot be read (RBAC refuses nodes): deployed, no endpoint, said why', async () => {
    const runner = new RecordingRunner();
    runner.answer((command, args) =>
      command === 'kubectl' && args[1] === 'nodes'
        ? { exitCode: 1, stdout: '', stderr: 'Error from server (Forbidden): nodes is forbidden' }
        : command === 'kubectl'
          ? { exitCode: 0, stdout: JSON.stringify({ spec: { type: 'NodePort', ports: [] } }), stderr: '' }
          : undefined,
    );
    const ctx = context();
    const result = await new KubernetesRuntime({ runner, charts: store }).apply(
      await release({ type: ExposureType.EXPOSURE_TYPE_NODE_PORT }),
      ctx,
    );
    expect(result.endpoints).toEqual([]);
    expect(ctx.lines.join('\n')).toContain(
      'endpoints not read: kubectl get nodes failed: Error from server (Forbidden)',
    );
  });

  it("restarts a custom chart's own workloads, found by the release's instance label, never deployment/<service>", async () => {
    const listed = {
      items: [
        { kind: 'Deployment', metadata: { name: `${WEB}-webapp` } },
        { kind: 'StatefulSet', metadata: { name: `${WEB}-cache` } },
      ],
    };
    const manifest = [
      `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${WEB}-webapp\nspec:\n  replicas: 3\n`,
      `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${WEB}-webapp\n`,
      `apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: ${WEB}-cache\nspec: {}\n`,
    ].join('---\n');
    const runner = new RecordingRunner();
    runner.answer((command, args) => {
      if (command === 'kubectl' && args[0] === 'get')
        return { exitCode: 0, stdout: JSON.stringify(listed), stderr: '' };
      if (command === 'helm' && args[0] === 'get') return { exitCode: 0, stdout: manifest, stderr: '' };
      return undefined;
    });
    const runtime = new KubernetesRuntime({ runner, charts: store });
    const custom = await release(undefined, { kind: 'CUSTOM_CHART' });
    const selector = ['--selector', `app.kubernetes.io/instance=${WEB}`];
    const list = ['get', 'deployment,statefulset', ...selector, ...kubectlTarget, '--output', 'json'];
    const status = (target: string) => ['rollout', 'status', target, ...kubectlTarget, '--watch', '--timeout=60s'];

    await runtime.restart(custom, context());
    expect(runner.calls.map((c) => c.args)).toEqual([
      list,
      ['rollout', 'restart', `deployment/${WEB}-webapp`, ...kubectlTarget],
      ['rollout', 'restart', `statefulset/${WEB}-cache`, ...kubectlTarget],
      status(`deployment/${WEB}-webapp`),
      status(`statefulset/${WEB}-cache`),
    ]);

    // A stopped one goes back to the replicas its release manifest declares (scaled to 0 by STOP).
    runner.calls.length = 0;
    await runtime.stop(custom, context());
    await runtime.restart({ ...custom, status: 'STOPPED' }, context());
    expect(runner.calls.map((c) => c.args)).toEqual([
      ['scale', 'deployment,statefulset', ...selector, '--replicas=0', ...kubectlTarget],
      list,
      ['get', 'manifest', WEB, ...helmTarget],
      ['scale', `deployment/${WEB}-webapp`, '--replicas=3', ...kubectlTarget],
      ['scale', `statefulset/${WEB}-cache`, '--replicas=1', ...kubectlTarget],
      status(`deployment/${WEB}-webapp`),
      status(`statefulset/${WEB}-cache`),
    ]);
    expect(runner.calls.flatMap((c) => c.args).some((a) => a === 'deployment/web')).toBe(false);

    // A chart whose workloads do not carry the label: said so, nothing guessed.
    const bare = new RecordingRunner();
    bare.answer(() => ({ exitCode: 0, stdout: '{"items":[]}', stderr: '' }));
    const error = await new KubernetesRuntime({ runner: bare }).restart(custom, context()).catch((e) => e);
    expect(error).toBeInstanceOf(RolloutError);
    expect(error.message).toBe(
      `the release's chart has no Deployment or StatefulSet labelled app.kubernetes.io/instance=${WEB}: nothing to restart`,
    );
  });
});

describe('helm versions', () => {
  it('asks helm its version once per worker and uses helm 3 flags (--atomic, --wait) or helm 4 ones', async () => {
    const flagsOf = async (version: string) => {
      const runner = new RecordingRunner({ helmVersion: version });
      const runtime = new KubernetesRuntime({ runner, charts: store });
      const r = await release(undefined);
      await runtime.apply(r, context());
      await runtime.rollbackTo({ ...r, revision: 2 }, r, context());
      await runtime.remove(r, context());
      expect(runner.versionCalls).toEqual([{ command: 'helm', args: ['version', '--template', '{{.Version}}'] }]);
      const of = (verb: string) => runner.calls.find((c) => c.args[0] === verb)!.args;
      return {
        upgrade: of('upgrade').filter((a) => /^--(atomic|wait|rollback-on-failure)/.test(a)),
        rollback: of('rollback').filter((a) => a.startsWith('--wait')),
        uninstall: of('uninstall').filter((a) => a.startsWith('--wait')),
      };
    };
    expect(await flagsOf('v3.15.4')).toEqual({
      upgrade: ['--atomic', '--wait'],
      rollback: ['--wait'],
      uninstall: ['--wait'],
    });
    expect(await flagsOf('v4.0.1')).toEqual({
      upgrade: ['--rollback-on-failure', '--wait=watcher'],
      rollback: ['--wait=watcher'],
      uninstall: ['--wait=watcher'],
    });
  });

  it('refuses an unsupported helm with FAILED_PRECONDITION before anything runs, and asks again only if helm could not run', async () => {
    for (const [version, words] of [
      ['v2.17.0', 'helm v2.17.0 is not supported (helm 3.8 or later 3.x, or helm 4.x)'],
      ['v3.7.2', 'helm v3.7.2 is not supported'],
      ['Client: &version.Version{SemVer:"v2.16.1"}', 'helm version answered "Client: &version.Version'],
    ] as const) {
      const runner = new RecordingRunner({ helmVersion: version });
      const runtime = new KubernetesRuntime({ runner, charts: store });
      const error = await runtime.preflight(context()).catch((e) => e);
      expect(error).toBeInstanceOf(DomainError);
      expect(error.code).toBe('FAILED_PRECONDITION');
      expect(error.message).toContain(words);
      // Refused for good: the worker does not ask again, and installs nothing.
      await expect(runtime.apply(await release(undefined), context())).rejects.toThrow(error.message);
      expect(runner.versionCalls).toHaveLength(1);
      expect(runner.calls).toEqual([]);
    }
    const missing = new RecordingRunner({ helmVersion: { exitCode: 127, stdout: '', stderr: 'helm: not found' } });
    const runtime = new KubernetesRuntime({ runner: missing });
    await expect(runtime.preflight(context())).rejects.toThrow('helm version failed: helm: not found');
    await expect(runtime.preflight(context())).rejects.toThrow('helm version failed');
    expect(missing.versionCalls).toHaveLength(2);
  });
});
