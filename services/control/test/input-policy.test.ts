import * as grpc from '@grpc/grpc-js';
import { callUnary, connect, fieldOf, isServiceError } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { type DeepPartial, useControl } from './harness.ts';

// What an environment may name (issue 21): one injective namespace rule, no two environments in one
// namespace, no reserved namespace, only registered kube contexts, sources within the operator's policy.
// Control runs with the dev stack's policy and one registered context.

const ctl = useControl({
  kubeContexts: ['staging-cluster'],
  sourceAllow: 'file:///var/lib/stageline/repos/,127.0.0.1:5001',
});
const { ServiceKind } = control;

const createEnv = (req: DeepPartial<control.CreateEnvironmentRequest>) =>
  callUnary(ctl.environments, 'createEnvironment', control.CreateEnvironmentRequest.fromPartial(req));

async function refusal(call: Promise<unknown>): Promise<{ code: string; field: string | undefined; message: string }> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isServiceError(error), 'the call should have failed').toBe(true);
  const e = error as grpc.ServiceError;
  return { code: grpc.status[e.code], field: fieldOf(e), message: e.details };
}

describe('namespaces', () => {
  it('gives a-b/c and a/b-c different namespaces (the join was not injective)', async () => {
    const one = await createEnv({ project: 'a-b', name: 'c' });
    const two = await createEnv({ project: 'a', name: 'b-c' });
    expect(one.environment!.settings!.namespace).toBe('a--b-c');
    expect(two.environment!.settings!.namespace).toBe('a-b-c');
  });

  it("refuses another environment's namespace with ALREADY_EXISTS naming it, on create and on update", async () => {
    const first = await createEnv({ project: 'ns', name: 'first', settings: { namespace: 'team-shared' } });
    const r = await refusal(createEnv({ project: 'ns', name: 'second', settings: { namespace: 'team-shared' } }));
    expect(r).toMatchObject({ code: 'ALREADY_EXISTS', field: 'settings.namespace' });
    expect(r.message).toContain(`environment ns/first (${first.environment!.id})`);
    // The default of one is the explicit choice of another.
    const fourth = await createEnv({ project: 'ns', name: 'fourth' });
    const third = await createEnv({ project: 'ns', name: 'third' });
    const u = await refusal(
      callUnary(
        ctl.environments,
        'updateEnvironment',
        control.UpdateEnvironmentRequest.fromPartial({
          environmentId: third.environment!.id,
          settings: { namespace: 'ns-fourth' },
        }),
      ),
    );
    expect(u).toMatchObject({ code: 'ALREADY_EXISTS', field: 'settings.namespace' });
    expect(u.message).toContain(`environment ns/fourth (${fourth.environment!.id})`);
  });

  it('refuses reserved namespaces, chosen or by default', async () => {
    for (const namespace of ['kube-system', 'kube-public', 'kube-node-lease', 'default', 'stageline']) {
      const r = await refusal(createEnv({ project: 'ns', name: 'reserved', settings: { namespace } }));
      expect(r).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'settings.namespace' });
      expect(r.message).toContain('is reserved');
    }
    const d = await refusal(createEnv({ project: 'stageline', name: 'system' }));
    expect(d).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'name' });
    expect(d.message).toContain('stageline-system');
  });
});

describe('kube contexts', () => {
  it('an admin RPC lists the registered contexts; a viewer may not', async () => {
    expect(await callUnary(ctl.environments, 'listKubeContexts', {})).toEqual({ contexts: ['staging-cluster'] });
    const access = connect(control.AccessServiceClient, ctl.address, ctl.security.user());
    const { token } = await callUnary(access, 'createToken', {
      name: 'viewer',
      role: control.Role.ROLE_VIEWER,
      projects: [],
      ttlSeconds: '0',
    });
    access.close();
    const viewer = connect(control.EnvironmentServiceClient, ctl.address, ctl.security.user(token));
    try {
      const r = await refusal(callUnary(viewer, 'listKubeContexts', {}));
      expect(r.code).toBe('PERMISSION_DENIED');
      expect(r.message).toContain('needs ROLE_ADMIN');
    } finally {
      viewer.close();
    }
  });

  it('only a context the operator registered may be named', async () => {
    const r = await refusal(
      createEnv({ project: 'ctx', name: 'a', runtime: 'kubernetes', settings: { kubernetesContext: 'kind-admin' } }),
    );
    expect(r).toMatchObject({ code: 'FAILED_PRECONDITION', field: 'settings.kubernetes_context' });
    expect(r.message).toContain('"kind-admin" is not registered');
    const ok = await createEnv({
      project: 'ctx',
      name: 'b',
      runtime: 'kubernetes',
      settings: { kubernetesContext: 'staging-cluster' },
    });
    expect(ok.environment!.settings!.kubernetesContext).toBe('staging-cluster');
    const u = await refusal(
      callUnary(
        ctl.environments,
        'updateEnvironment',
        control.UpdateEnvironmentRequest.fromPartial({
          environmentId: ok.environment!.id,
          settings: { kubernetesContext: 'prod' },
        }),
      ),
    );
    expect(u).toMatchObject({ code: 'FAILED_PRECONDITION', field: 'settings.kubernetes_context' });
  });
});

describe('exposure of public ports (kubernetes)', () => {
  const { ExposureType } = control;
  it('defaults to CLUSTER_IP, keeps an INGRESS with its domain, class and TLS secret, and changes it by type', async () => {
    const plain = await createEnv({ project: 'expo', name: 'plain', runtime: 'kubernetes' });
    expect(plain.environment!.settings!.exposure).toEqual({
      type: ExposureType.EXPOSURE_TYPE_CLUSTER_IP,
      ingressDomain: '',
      ingressClass: '',
      tlsSecret: '',
    });
    const exposure = {
      type: ExposureType.EXPOSURE_TYPE_INGRESS,
      ingressDomain: 'staging.example.com',
      ingressClass: 'nginx',
      tlsSecret: 'staging-wildcard',
    };
    const ingress = await createEnv({
      project: 'expo',
      name: 'ingress',
      runtime: 'kubernetes',
      settings: { exposure },
    });
    expect(ingress.environment!.settings!.exposure).toEqual(exposure);
    const update = (settings: DeepPartial<control.EnvironmentSettings>) =>
      callUnary(
        ctl.environments,
        'updateEnvironment',
        control.UpdateEnvironmentRequest.fromPartial({ environmentId: ingress.environment!.id, settings }),
      );
    // Other settings leave it as it is; a new exposure replaces it.
    expect((await update({ maxParallelDeploys: 2 })).environment!.settings!.exposure).toEqual(exposure);
    const nodePort = await update({ exposure: { type: ExposureType.EXPOSURE_TYPE_NODE_PORT } });
    expect(nodePort.environment!.settings!.exposure).toEqual({
      type: ExposureType.EXPOSURE_TYPE_NODE_PORT,
      ingressDomain: '',
      ingressClass: '',
      tlsSecret: '',
    });
  });

  it('refuses an exposure that does not fit its type, naming the field', async () => {
    const cases: Array<[DeepPartial<control.Exposure>, string]> = [
      [{ type: ExposureType.EXPOSURE_TYPE_INGRESS }, 'settings.exposure.ingress_domain'],
      [
        { type: ExposureType.EXPOSURE_TYPE_INGRESS, ingressDomain: 'UPPER.example.com' },
        'settings.exposure.ingress_domain',
      ],
      [
        { type: ExposureType.EXPOSURE_TYPE_INGRESS, ingressDomain: 'a.example.com', ingressClass: 'a b' },
        'settings.exposure.ingress_class',
      ],
      [{ type: ExposureType.EXPOSURE_TYPE_LOAD_BALANCER, tlsSecret: 'tls' }, 'settings.exposure.tls_secret'],
      [{ type: 9 as control.ExposureType }, 'settings.exposure.type'],
    ];
    for (const [exposure, field] of cases) {
      const r = await refusal(
        createEnv({ project: 'expo', name: 'bad', runtime: 'kubernetes', settings: { exposure } }),
      );
      expect(r, JSON.stringify(exposure)).toMatchObject({ code: 'INVALID_ARGUMENT', field });
    }
  });
});

describe('the source policy', () => {
  let envId = '';
  const add = async (service: DeepPartial<control.Service>) => {
    if (envId === '') envId = (await createEnv({ project: 'src', name: 'policy' })).environment!.id;
    return callUnary(
      ctl.environments,
      'addService',
      control.AddServiceRequest.fromPartial({ environmentId: envId, service }),
    );
  };
  const app = (gitUrl: string, name = 'app') => ({
    name,
    kind: ServiceKind.SERVICE_KIND_APPLICATION,
    source: { $case: 'application' as const, value: { gitUrl } },
  });
  const image = (img: string, name = 'img') => ({
    name,
    kind: ServiceKind.SERVICE_KIND_CONTAINER,
    source: { $case: 'container' as const, value: { image: img, tag: '1' } },
  });

  it.each([
    ['file:///etc/shadow-repo.git', 'service.application.git_url', 'file'],
    ['file:///var/lib/stageline/repos/../../../../root/x.git', 'service.application.git_url', 'file'],
    ['http://169.254.169.254/latest/meta-data', 'service.application.git_url', 'link-local'],
    ['https://10.0.0.7/team/app.git', 'service.application.git_url', 'private'],
    ['http://127.0.0.1:50051/x.git', 'service.application.git_url', 'loopback'],
  ])('refuses git URL %s, naming %s and rule %s', async (url, field, rule) => {
    const r = await refusal(add(app(url)));
    expect(r).toMatchObject({ code: 'FAILED_PRECONDITION', field });
    expect(r.message).toContain(`rule ${rule}`);
  });

  it('refuses image registries and chart repositories by the same rules', async () => {
    const i = await refusal(add(image('192.168.1.10:5000/team/app')));
    expect(i).toMatchObject({ code: 'FAILED_PRECONDITION', field: 'service.container.image' });
    expect(i.message).toContain('rule private');
    const c = await refusal(
      add({
        ...image('nginx', 'charted'),
        chart: { source: { $case: 'repository', value: { url: 'oci://localhost:5000/charts/web' } } },
      }),
    );
    expect(c).toMatchObject({ code: 'FAILED_PRECONDITION', field: 'service.chart.repository.url' });
    expect(c.message).toContain('rule loopback');
  });

  it("allows what the dev policy allows: the example's repository and registry", async () => {
    await add(app('file:///var/lib/stageline/repos/api.git', 'api'));
    await add(image('127.0.0.1:5001/examples/busybox', 'web'));
    await add(app('https://github.com/example/app.git', 'public'));
  });
});
