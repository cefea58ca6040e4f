import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

// TLS has no default: every case brings the directory of the certificates.
const TLS = { STAGELINE_TLS_DIR: '/etc/stageline/tls' };

describe('deploy config', () => {
  it('has working defaults (the table in its README)', () => {
    expect(loadConfig(TLS)).toEqual({
      grpcListen: '127.0.0.1:50054',
      healthListen: '127.0.0.1:50154',
      natsUrl: 'nats://127.0.0.1:4222',
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/stageline',
      busPrefix: 'stageline',
      logLevel: 'info',
      tls: {
        ca: '/etc/stageline/tls/ca.pem',
        cert: '/etc/stageline/tls/deploy.pem',
        key: '/etc/stageline/tls/deploy-key.pem',
      },
      stateDir: path.resolve('.stageline'),
      slots: 7,
      workerAckWaitMs: 6000,
      workerDrainGraceMs: 8000,
      podman: 'podman',
      helm: 'helm',
      kubectl: 'kubectl',
      git: 'git',
      managedPostgres: undefined,
      cron: true,
      cronPollMs: 5000,
      runtimePollMs: 5000,
      cronClockFile: undefined,
      kubeContexts: [],
      // Until a cluster's pull address is configured, nodes pull from the address jobs name.
      kubeMirror: { push: '127.0.0.1:5000', pull: { '': '127.0.0.1:5000' }, credentialsFile: undefined },
    });
  });

  it('configures the mirror per cluster: push address, pull address per kube context, credentials file', () => {
    expect(
      loadConfig({
        ...TLS,
        MIRROR_REGISTRY: '127.0.0.1:5000',
        KUBE_MIRROR_PULL: 'registry.internal:5000, kind-dev=host.docker.internal:5000',
        KUBE_MIRROR_CREDENTIALS: '/etc/stageline/mirror.json',
      }).kubeMirror,
    ).toEqual({
      push: '127.0.0.1:5000',
      pull: { '': 'registry.internal:5000', 'kind-dev': 'host.docker.internal:5000' },
      credentialsFile: '/etc/stageline/mirror.json',
    });
    for (const [variable, value] of [
      ['KUBE_MIRROR_PULL', 'kind-dev=http://registry'],
      ['KUBE_MIRROR_PULL', '=registry:5000'],
      ['KUBE_MIRROR_CREDENTIALS', 'relative.json'],
      ['MIRROR_REGISTRY', 'registry:99999'],
    ] as const) {
      expect(() => loadConfig({ ...TLS, [variable]: value }), `${variable}=${value}`).toThrow(variable);
    }
  });

  it('gives MANAGED databases a host per runtime: the podman gateway locally, an in-cluster name on kubernetes', () => {
    const url = 'postgres://postgres@127.0.0.1:5433/postgres';
    expect(loadConfig({ ...TLS, MANAGED_POSTGRES_URL: url }).managedPostgres?.kubernetes).toBeUndefined();
    expect(
      loadConfig({
        ...TLS,
        MANAGED_POSTGRES_URL: url,
        MANAGED_POSTGRES_KUBE_HOST: 'postgres.stageline-system.svc.cluster.local',
      }).managedPostgres,
    ).toEqual({
      adminUrl: url,
      host: 'host.containers.internal',
      port: 5433,
      kubernetes: { host: 'postgres.stageline-system.svc.cluster.local', port: 5433 },
    });
    expect(() => loadConfig({ ...TLS, MANAGED_POSTGRES_URL: url, MANAGED_POSTGRES_KUBE_HOST: 'a host' })).toThrow(
      'MANAGED_POSTGRES_KUBE_HOST',
    );
  });

  it('reads the registered kube contexts (issue 21)', () => {
    expect(loadConfig({ ...TLS, STAGELINE_KUBE_CONTEXTS: 'prod-eu, staging' }).kubeContexts).toEqual([
      'prod-eu',
      'staging',
    ]);
  });

  it('configures the managed PostgreSQL server: admin URL, and where workloads reach it', () => {
    expect(
      loadConfig({ ...TLS, MANAGED_POSTGRES_URL: 'postgres://postgres@127.0.0.1:5433/postgres' }).managedPostgres,
    ).toEqual({
      adminUrl: 'postgres://postgres@127.0.0.1:5433/postgres',
      host: 'host.containers.internal',
      port: 5433,
      kubernetes: undefined,
    });
    expect(
      loadConfig({
        ...TLS,
        MANAGED_POSTGRES_URL: 'postgres://postgres@db.internal/postgres',
        MANAGED_POSTGRES_HOST: 'db.example.com',
        MANAGED_POSTGRES_PORT: '6432',
      }).managedPostgres,
    ).toEqual({
      adminUrl: 'postgres://postgres@db.internal/postgres',
      host: 'db.example.com',
      port: 6432,
      kubernetes: undefined,
    });
  });

  it('names the variable at fault', () => {
    const cases: Array<[string, string]> = [
      ['GRPC_LISTEN', '50054'],
      ['GRPC_LISTEN', '127.0.0.1:70000'],
      ['NATS_URL', 'http://127.0.0.1:4222'],
      ['DATABASE_URL', 'mysql://db/stageline'],
      ['STAGELINE_BUS_PREFIX', 'has.dots'],
      ['LOG_LEVEL', 'loud'],
      ['DEPLOY_SLOTS', '0'],
      ['DEPLOY_SLOTS', 'seven'],
      ['WORKER_ACK_WAIT_MS', '10'],
      ['PODMAN', 'podman --remote'],
      ['MANAGED_POSTGRES_URL', 'mysql://db'],
      ['DEPLOY_CRON', 'yes'],
      ['DEPLOY_CRON_POLL_MS', '5'],
      ['DEPLOY_RUNTIME_POLL_MS', '10'],
      ['STAGELINE_KUBE_CONTEXTS', 'ok,-bad'],
    ];
    for (const [variable, value] of cases) {
      let caught: unknown;
      try {
        loadConfig({ ...TLS, [variable]: value });
      } catch (e) {
        caught = e;
      }
      expect(caught, `${variable}=${value}`).toBeInstanceOf(ConfigError);
      expect((caught as ConfigError).variable).toBe(variable);
      expect((caught as ConfigError).message.startsWith(`${variable}: `)).toBe(true);
    }
  });

  it('refuses to start without TLS, naming the variable to set', () => {
    expect(() => loadConfig({})).toThrow(ConfigError);
    expect(() => loadConfig({})).toThrow(/^STAGELINE_TLS_CA: TLS is required: set STAGELINE_TLS_DIR .*deploy\.pem/);
  });

  it('never echoes a database URL, which may carry a password', () => {
    expect(() => loadConfig({ ...TLS, DATABASE_URL: 'postgres//user:s3cret@db' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...TLS, DATABASE_URL: 'postgres//user:s3cret@db' })).not.toThrow(/s3cret/);
    expect(() => loadConfig({ ...TLS, DATABASE_URL: 'mysql://user:s3cret@db/x' })).not.toThrow(/s3cret/);
  });

  it('takes the state directory, slots and binaries from the environment', () => {
    expect(
      loadConfig({ ...TLS, STAGELINE_STATE: '/var/lib/stageline', DEPLOY_SLOTS: '3', HELM: '/opt/helm' }),
    ).toMatchObject({
      stateDir: '/var/lib/stageline',
      slots: 3,
      helm: '/opt/helm',
    });
  });

  it('accepts port 0 and IPv6 listen addresses', () => {
    expect(loadConfig({ ...TLS, GRPC_LISTEN: '[::1]:0' }).grpcListen).toBe('[::1]:0');
  });
});
