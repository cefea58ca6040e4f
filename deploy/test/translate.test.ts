// The translation of Stageline's rendered manifests for podman kube play 4.3 (deploy/pods/translate.ts).
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type Manifest, TranslationError, translate } from '../pods/translate.ts';

const OPTIONS = { volumeRoot: '/srv/pods', podPrefix: 'stageline-' };
const labels = { app: 'api' };

function deployment(spec: Record<string, unknown> = {}, container: Record<string, unknown> = {}): Manifest {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'api' },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          hostNetwork: true,
          securityContext: { fsGroup: 10001 },
          containers: [
            {
              name: 'api',
              image: 'example/api',
              ports: [
                { name: 'grpc', containerPort: 31051 },
                { name: 'health', containerPort: 31151 },
              ],
              readinessProbe: { httpGet: { path: '/readyz', port: 'health' } },
              livenessProbe: { httpGet: { path: '/livez', port: 'health' } },
              ...container,
            },
          ],
          ...spec,
        },
      },
    },
  };
}

const configMap: Manifest = {
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name: 'config' },
  data: { A: 'from-map', B: 'b' },
};
const secret: Manifest = {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'creds' },
  data: {
    url: Buffer.from('postgres://u:p@db/x').toString('base64'),
    'tls.key': Buffer.from('KEY').toString('base64'),
  },
};

const podOf = (yaml: string): { spec: Record<string, unknown> & { containers: Record<string, unknown>[] } } =>
  parse(yaml);

describe('translate', () => {
  it('resolves envFrom and valueFrom into plain values, explicit env winning, optional absent keys left out', () => {
    const plan = translate(
      [
        configMap,
        secret,
        deployment(
          {},
          {
            envFrom: [{ configMapRef: { name: 'config' } }],
            env: [
              { name: 'A', value: 'explicit' },
              { name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'creds', key: 'url' } } },
              { name: 'MANAGED', valueFrom: { secretKeyRef: { name: 'absent', key: 'url', optional: true } } },
            ],
          },
        ),
      ],
      OPTIONS,
    );
    const [pod] = plan.workloads;
    const container = podOf(pod?.yaml ?? '').spec.containers[0];
    expect(container?.env).toEqual([
      { name: 'A', value: 'explicit' },
      { name: 'B', value: 'b' },
      { name: 'DATABASE_URL', value: 'postgres://u:p@db/x' },
    ]);
    expect(container?.envFrom).toBeUndefined();
  });

  it('turns a Deployment into a Pod without probes or port mappings, and returns its readiness URL', () => {
    const plan = translate([deployment()], OPTIONS);
    expect(plan.workloads).toHaveLength(1);
    const pod = plan.workloads[0];
    expect(pod?.name).toBe('stageline-api');
    expect(pod?.readiness).toBe('http://127.0.0.1:31151/readyz');
    expect(pod?.containers).toEqual(['stageline-api-api']);
    const doc = parse(pod?.yaml ?? '') as {
      kind: string;
      spec: { restartPolicy: string; containers: Record<string, unknown>[] };
    };
    expect(doc.kind).toBe('Pod');
    expect(doc.spec.restartPolicy).toBe('Always');
    expect(doc.spec.containers[0]).not.toHaveProperty('readinessProbe');
    expect(doc.spec.containers[0]).not.toHaveProperty('livenessProbe');
    expect(doc.spec.containers[0]).not.toHaveProperty('ports');
  });

  it('writes Secret volumes as files with the mode Kubernetes would, owned by the fsGroup; emptyDir world-writable', () => {
    const plan = translate(
      [
        secret,
        deployment({
          volumes: [
            {
              name: 'tls',
              secret: { secretName: 'creds', defaultMode: 0o440, items: [{ key: 'tls.key', path: 'server-key.pem' }] },
            },
            { name: 'state', emptyDir: {} },
            { name: 'repos', hostPath: { path: '/var/lib/repos' } },
          ],
        }),
      ],
      OPTIONS,
    );
    expect(plan.dirs).toEqual([
      {
        path: '/srv/pods/stageline-api/tls',
        mode: 0o755,
        uid: 0,
        gid: 10001,
        files: [{ name: 'server-key.pem', content: Buffer.from('KEY'), mode: 0o440 }],
      },
      { path: '/srv/pods/stageline-api/state', mode: 0o777, uid: 0, gid: 10001, files: [] },
    ]);
    const volumes = podOf(plan.workloads[0]?.yaml ?? '').spec.volumes;
    expect(volumes).toEqual([
      { name: 'tls', hostPath: { path: '/srv/pods/stageline-api/tls', type: 'Directory' } },
      { name: 'state', hostPath: { path: '/srv/pods/stageline-api/state', type: 'Directory' } },
      { name: 'repos', hostPath: { path: '/var/lib/repos' } },
    ]);
  });

  it('runs each init container as a pod of its own, before the pod, and a Job as a pod that runs once', () => {
    const init = { name: 'keys', image: 'example/api', command: ['/bin/sh', '-c', 'true'] };
    const job: Manifest = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'provision' },
      spec: {
        template: { spec: { hostNetwork: true, restartPolicy: 'OnFailure', containers: [{ name: 'p', image: 'x' }] } },
      },
    };
    const plan = translate([job, deployment({ initContainers: [init] })], OPTIONS);
    expect(plan.jobs.map((j) => [j.name, podOf(j.yaml).spec.restartPolicy])).toEqual([
      ['stageline-provision', 'Never'],
    ]);
    const [pod] = plan.workloads;
    expect(podOf(pod?.yaml ?? '').spec.initContainers).toBeUndefined();
    expect(pod?.init.map((p) => [p.name, p.containers, podOf(p.yaml).spec.restartPolicy])).toEqual([
      ['stageline-api-init-keys', ['stageline-api-init-keys-keys'], 'Never'],
    ]);
  });

  it('checks a Service against its pods: on the host network its port must be theirs', () => {
    const service = (port: number, targetPort: unknown): Manifest => ({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'api' },
      spec: { selector: labels, ports: [{ port, targetPort }] },
    });
    expect(translate([deployment(), service(31051, 'grpc')], OPTIONS).services).toEqual([
      'Service/api: 127.0.0.1:31051 (Deployment/api)',
    ]);
    expect(() => translate([deployment(), service(50051, 'grpc')], OPTIONS)).toThrow(
      /Service\/api: port 50051 must be its target's container port \(31051\)/,
    );
    const orphan = { ...service(1, 1), spec: { selector: { app: 'other' }, ports: [] } };
    expect(() => translate([deployment(), orphan], OPTIONS)).toThrow(
      /Service\/api: its selector matches no Deployment/,
    );
  });

  it('reports what podman does not run instead of skipping it silently, and refuses what it cannot run', () => {
    const hpa: Manifest = { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata: { name: 'api' } };
    expect(translate([hpa], OPTIONS).ignored).toEqual([
      'HorizontalPodAutoscaler/api: podman runs no autoscaler (one replica each here)',
    ]);
    const sts: Manifest = { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'db' } };
    expect(() => translate([sts], OPTIONS)).toThrow(TranslationError);
    expect(() => translate([sts], OPTIONS)).toThrow(/StatefulSet\/db: podman kube play 4.3 cannot run a StatefulSet/);
    const two = deployment();
    (two.spec as { replicas: number }).replicas = 2;
    expect(() => translate([two], OPTIONS)).toThrow(/Deployment\/api: replicas 2/);
    expect(() => translate([deployment({ hostNetwork: false })], OPTIONS)).toThrow(/hostNetwork: true/);
  });

  it('names the missing ConfigMap, Secret or key', () => {
    expect(() =>
      translate(
        [
          deployment(
            {},
            { env: [{ name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'creds', key: 'nope' } } }] },
          ),
        ],
        OPTIONS,
      ),
    ).toThrow(/Deployment\/api container api: env DATABASE_URL: Secret creds has no key "nope"/);
    expect(() => translate([deployment({}, { envFrom: [{ configMapRef: { name: 'config' } }] })], OPTIONS)).toThrow(
      /envFrom names ConfigMap config, which the manifests do not hold/,
    );
    expect(() =>
      translate([deployment({ volumes: [{ name: 'tls', secret: { secretName: 'absent' } }] })], OPTIONS),
    ).toThrow(/volume tls names Secret absent/);
    expect(() =>
      translate(
        [
          secret,
          deployment({
            volumes: [{ name: 'tls', secret: { secretName: 'creds', items: [{ key: 'url', path: '../escape' }] } }],
          }),
        ],
        OPTIONS,
      ),
    ).toThrow(/must stay inside the volume/);
  });
});
