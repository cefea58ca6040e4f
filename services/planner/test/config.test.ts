import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

// TLS has no default: every case brings the directory of the certificates.
const TLS = { STAGELINE_TLS_DIR: '/etc/stageline/tls' };

describe('planner config', () => {
  it('has working defaults (the table in its README)', () => {
    expect(loadConfig(TLS)).toEqual({
      grpcListen: '127.0.0.1:50052',
      healthListen: '127.0.0.1:50152',
      natsUrl: 'nats://127.0.0.1:4222',
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/stageline',
      busPrefix: 'stageline',
      logLevel: 'info',
      tls: {
        ca: '/etc/stageline/tls/ca.pem',
        cert: '/etc/stageline/tls/planner.pem',
        key: '/etc/stageline/tls/planner-key.pem',
      },
      controlAddress: '127.0.0.1:50051',
      buildAddress: '127.0.0.1:50053',
      jobQueueLimitMs: 1_800_000,
      jobDeadlineGraceMs: 300_000,
    });
  });

  it('names the variable at fault', () => {
    const cases: Array<[string, string]> = [
      ['GRPC_LISTEN', '50052'],
      ['GRPC_LISTEN', '127.0.0.1:70000'],
      ['NATS_URL', 'http://127.0.0.1:4222'],
      ['DATABASE_URL', 'mysql://db/stageline'],
      ['STAGELINE_BUS_PREFIX', 'has.dots'],
      ['LOG_LEVEL', 'loud'],
      ['STAGELINE_BUILD_ADDRESS', 'build'],
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
    expect(() => loadConfig({})).toThrow(/^STAGELINE_TLS_CA: TLS is required: set STAGELINE_TLS_DIR .*planner\.pem/);
  });

  it('never echoes a database URL, which may carry a password', () => {
    expect(() => loadConfig({ ...TLS, DATABASE_URL: 'postgres//user:s3cret@db' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...TLS, DATABASE_URL: 'postgres//user:s3cret@db' })).not.toThrow(/s3cret/);
    expect(() => loadConfig({ ...TLS, DATABASE_URL: 'mysql://user:s3cret@db/x' })).not.toThrow(/s3cret/);
  });

  it('accepts port 0 and IPv6 listen addresses', () => {
    expect(loadConfig({ ...TLS, GRPC_LISTEN: '[::1]:0' }).grpcListen).toBe('[::1]:0');
  });
});
