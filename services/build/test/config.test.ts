import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

// TLS has no default: every case brings the directory of the certificates.
const TLS = { STAGELINE_TLS_DIR: '/etc/stageline/tls' };

describe('build config', () => {
  it('has working defaults (the table in its README)', () => {
    expect(loadConfig(TLS)).toEqual({
      grpcListen: '127.0.0.1:50053',
      healthListen: '127.0.0.1:50153',
      natsUrl: 'nats://127.0.0.1:4222',
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/stageline',
      busPrefix: 'stageline',
      logLevel: 'info',
      tls: {
        ca: '/etc/stageline/tls/ca.pem',
        cert: '/etc/stageline/tls/build.pem',
        key: '/etc/stageline/tls/build-key.pem',
      },
      mirrorRegistry: '127.0.0.1:5000',
      insecureRegistries: [],
      registryAuthFile: undefined,
      workerAckWaitMs: 6000,
      workerDrainGraceMs: 8000,
      workDir: join(tmpdir(), 'stageline-build'),
      gitCredentialsFile: undefined,
      gitSshProgram: 'ssh',
      buildLockTtlMs: 30000,
    });
  });

  it('keeps clones under the state directory, or where BUILD_WORK_DIR says', () => {
    expect(loadConfig({ ...TLS, STAGELINE_STATE: '/var/lib/stageline' }).workDir).toBe('/var/lib/stageline/build');
    expect(loadConfig({ ...TLS, BUILD_WORK_DIR: '/srv/builds' }).workDir).toBe('/srv/builds');
    expect(() => loadConfig({ ...TLS, BUILD_WORK_DIR: 'relative' })).toThrow(/BUILD_WORK_DIR/);
    expect(() => loadConfig({ ...TLS, BUILD_LOCK_TTL_MS: '10' })).toThrow(/BUILD_LOCK_TTL_MS/);
  });

  it('names the variable at fault', () => {
    const cases: Array<[string, string]> = [
      ['GRPC_LISTEN', '50053'],
      ['GRPC_LISTEN', '127.0.0.1:70000'],
      ['NATS_URL', 'http://127.0.0.1:4222'],
      ['DATABASE_URL', 'mysql://db/stageline'],
      ['STAGELINE_BUS_PREFIX', 'has.dots'],
      ['LOG_LEVEL', 'loud'],
      ['MIRROR_REGISTRY', 'http://127.0.0.1:5000'],
      ['MIRROR_REGISTRY', '127.0.0.1:5000/path'],
      ['REGISTRY_INSECURE_HOSTS', 'registry.lan:5000,not a host'],
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
    expect(() => loadConfig({})).toThrow(/^STAGELINE_TLS_CA: TLS is required: set STAGELINE_TLS_DIR .*build\.pem/);
  });

  it('never echoes a database URL, which may carry a password', () => {
    expect(() => loadConfig({ ...TLS, DATABASE_URL: 'postgres//user:s3cret@db' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...TLS, DATABASE_URL: 'postgres//user:s3cret@db' })).not.toThrow(/s3cret/);
    expect(() => loadConfig({ ...TLS, DATABASE_URL: 'mysql://user:s3cret@db/x' })).not.toThrow(/s3cret/);
  });

  it('reads the mirror registry and the extra insecure registries', () => {
    const config = loadConfig({
      ...TLS,
      MIRROR_REGISTRY: 'registry.lan:5000',
      REGISTRY_INSECURE_HOSTS: ' a.lan:5000 , b.lan ',
    });
    expect(config.mirrorRegistry).toBe('registry.lan:5000');
    expect(config.insecureRegistries).toEqual(['a.lan:5000', 'b.lan']);
  });

  it('accepts port 0 and IPv6 listen addresses', () => {
    expect(loadConfig({ ...TLS, GRPC_LISTEN: '[::1]:0' }).grpcListen).toBe('[::1]:0');
  });
});
