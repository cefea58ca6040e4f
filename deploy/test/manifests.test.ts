// Every overlay of deploy/kubernetes renders (kubectl kustomize, offline) and every manifest it renders
// is valid against the Kubernetes schemas (kubernetes-models); then what the README and the services
// rely on: probes on the HTTP health port, images from a registry, every Secret named in the README,
// autoscalers and disruption budgets on real Deployments, and the local-pods overlay translatable.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type Manifest, translate } from '../pods/translate.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const OVERLAYS = path.join(ROOT, 'deploy/kubernetes/overlays');
const run = promisify(execFile);

interface Validatable {
  validate(): void;
}
const MODELS: Record<string, new (data: never) => Validatable> = {
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/Service': Service,
};

/** Throws naming the manifest and the schema's complaint; unknown kinds are errors too. */
function validate(m: Manifest): void {
  const Model = MODELS[`${m.apiVersion}/${m.kind}`];
  if (Model === undefined)
    throw new Error(`${m.apiVersion} ${m.kind} ${m.metadata.name}: no schema known to this test`);
  try {
    new Model(m as never).validate();
  } catch (e) {
    throw new Error(`${m.kind}/${m.metadata.name}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

async function render(dir: string): Promise<Manifest[]> {
  const { stdout } = await run('kubectl', ['kustomize', dir], { maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(stdout)
    .map((d) => d.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

type Obj = Record<string, unknown>;
const podSpec = (m: Manifest): Obj => (m.spec as { template: { spec: Obj } }).template.spec;
const containersOf = (m: Manifest): Obj[] => [
  ...((podSpec(m).initContainers as Obj[] | undefined) ?? []),
  ...(podSpec(m).containers as Obj[]),
];

/** Every Secret a pod names: env secretKeyRef, envFrom secretRef, secret volumes. */
function secretsNamed(manifests: readonly Manifest[]): Set<string> {
  const names = new Set<string>();
  for (const m of manifests.filter((x) => x.kind === 'Deployment' || x.kind === 'Job')) {
    for (const c of containersOf(m)) {
      for (const e of (c.env as Obj[] | undefined) ?? []) {
        const ref = (e.valueFrom as { secretKeyRef?: { name: string } } | undefined)?.secretKeyRef;
        if (ref) names.add(ref.name);
      }
      for (const e of (c.envFrom as Obj[] | undefined) ?? []) {
        const ref = e.secretRef as { name: string } | undefined;
        if (ref) names.add(ref.name);
      }
    }
    for (const v of (podSpec(m).volumes as Obj[] | undefined) ?? []) {
      const secret = v.secret as { secretName: string } | undefined;
      if (secret) names.add(secret.secretName);
    }
  }
  return names;
}

const overlays = readdirSync(OVERLAYS).sort();

describe('Kubernetes manifests', () => {
  it('has the overlays the README describes', () => {
    expect(overlays).toEqual(['local-pods', 'production']);
  });

  it('rejects a manifest the schemas reject (the check below is live)', () => {
    const broken = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'broken' },
      spec: {
        selector: {},
        template: { spec: { containers: [{ name: 'c', image: 'i', ports: [{ containerPort: 'eighty' }] }] } },
      },
    } as unknown as Manifest;
    expect(() => validate(broken)).toThrow(/Deployment\/broken: .*containerPort must be integer/);
    expect(() => validate({ apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'x' } })).toThrow(
      /no schema/,
    );
  });

  describe.each(overlays)('overlay %s', (overlay) => {
    it('renders, and every manifest is valid against the Kubernetes schemas', async () => {
      const manifests = await render(path.join(OVERLAYS, overlay));
      const kinds = manifests.map((m) => `${m.kind}/${m.metadata.name}`);
      for (const name of ['control', 'planner', 'build', 'deploy']) {
        expect(kinds).toContain(`Deployment/${name}`);
        expect(kinds).toContain(`Service/${name}`);
      }
      expect(kinds).toContain('Job/provision');
      expect(kinds).toContain('ConfigMap/stageline-config');
      for (const m of manifests) validate(m);
    });

    it('probes every service on its HTTP health port: readiness /readyz, liveness /livez', async () => {
      const manifests = await render(path.join(OVERLAYS, overlay));
      for (const m of manifests.filter((x) => x.kind === 'Deployment')) {
        const [container] = podSpec(m).containers as Obj[];
        const env = new Map(
          ((container?.env as { name: string; value?: string }[]) ?? []).map((e) => [e.name, e.value]),
        );
        const healthPort = Number(env.get('HEALTH_LISTEN')?.split(':').at(-1));
        const ports = (container?.ports as { name: string; containerPort: number }[]) ?? [];
        expect(ports.find((p) => p.name === 'health')?.containerPort, m.metadata.name).toBe(healthPort);
        expect(container?.readinessProbe, m.metadata.name).toMatchObject({
          httpGet: { path: '/readyz', port: 'health' },
        });
        expect(container?.livenessProbe, m.metadata.name).toMatchObject({
          httpGet: { path: '/livez', port: 'health' },
        });
        // gRPC on the port the Service names.
        const grpc = Number(env.get('GRPC_LISTEN')?.split(':').at(-1));
        expect(ports.find((p) => p.name === 'grpc')?.containerPort, m.metadata.name).toBe(grpc);
      }
    });

    it('takes every image from a registry, and names only Secrets the README tells how to make', async () => {
      const manifests = await render(path.join(OVERLAYS, overlay));
      for (const m of manifests.filter((x) => x.kind === 'Deployment' || x.kind === 'Job')) {
        for (const c of containersOf(m)) {
          expect(String(c.image), `${m.metadata.name} ${String(c.name)}`).toMatch(
            /^[a-z0-9.-]+(:\d+)?\/stageline\/[a-z]+/,
          );
        }
      }
      const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
      const secrets = [...secretsNamed(manifests)];
      expect(secrets.length).toBeGreaterThanOrEqual(12);
      expect(secrets.filter((name) => !readme.includes(name)).sort(), 'Secrets the README does not name').toEqual([]);
    });

    it('scales and protects only Deployments that exist', async () => {
      const manifests = await render(path.join(OVERLAYS, overlay));
      const deployments = manifests.filter((m) => m.kind === 'Deployment');
      const names = deployments.map((m) => m.metadata.name);
      const hpas = manifests.filter((m) => m.kind === 'HorizontalPodAutoscaler');
      expect(hpas.map((m) => (m.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name).sort()).toEqual([
        'build',
        'deploy',
      ]);
      for (const pdb of manifests.filter((m) => m.kind === 'PodDisruptionBudget')) {
        const selector = (pdb.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
        const matched = deployments.filter((d) => {
          const labels = (d.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata
            .labels;
          return Object.entries(selector).every(([k, v]) => labels[k] === v);
        });
        expect(
          matched.map((d) => d.metadata.name),
          pdb.metadata.name,
        ).toEqual([pdb.metadata.name]);
      }
      expect(names.sort()).toEqual(['build', 'control', 'deploy', 'planner']);
    });
  });

  it('local-pods translates for podman: four services on the host network, probed on 127.0.0.1', async () => {
    const manifests = await render(path.join(OVERLAYS, 'local-pods'));
    // The Secrets stack-pods.ts generates from the machine's credentials, as placeholders.
    const secrets: Manifest[] = [...secretsNamed(manifests)].map((name) => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name },
      stringData: Object.fromEntries(
        [
          'url',
          'ca.pem',
          'credentials.json',
          'admin.token',
          'active',
          'k1.key',
          ...['control', 'planner', 'build', 'deploy'].flatMap((s) => [`${s}.pem`, `${s}-key.pem`]),
        ].map((k) => [k, 'x']),
      ),
    }));
    const plan = translate([...manifests, ...secrets], {
      volumeRoot: '/var/tmp/stageline-pods',
      podPrefix: 'stageline-',
    });
    expect(plan.jobs.map((j) => j.name)).toEqual(['stageline-provision']);
    expect(plan.workloads.map((w) => [w.name, w.readiness]).sort()).toEqual([
      ['stageline-build', 'http://127.0.0.1:31153/readyz'],
      ['stageline-control', 'http://127.0.0.1:31151/readyz'],
      ['stageline-deploy', 'http://127.0.0.1:31154/readyz'],
      ['stageline-planner', 'http://127.0.0.1:31152/readyz'],
    ]);
    expect(plan.services.sort()).toEqual([
      'Service/build: 127.0.0.1:31053 (Deployment/build)',
      'Service/control: 127.0.0.1:31051 (Deployment/control)',
      'Service/deploy: 127.0.0.1:31054 (Deployment/deploy)',
      'Service/planner: 127.0.0.1:31052 (Deployment/planner)',
    ]);
  });
});
