import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';

describe('planner config', () => {
  it('has working defaults (the table in its README)', () => {
    expect(loadConfig({})).toEqual({
      grpcListen: '127.0.0.1:50052',
      natsUrl: 'nats://127.0.0.1:4222',
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/stageline',
      busPrefix: 'stageline',
      logLevel: 'info',
      controlAddress: '127.0.0.1:50051',
      buildAddress: '127.0.0.1:50053',
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
        loadConfig({ [variable]: value });
      } catch (e) {
        caught = e;
      }
      expect(caught, `${variable}=${value}`).toBeInstanceOf(ConfigError);
      expect((caught as ConfigError).variable).toBe(variable);
      expect((caught as ConfigError).message.startsWith(`${variable}: `)).toBe(true);
    }
  });

  it('never echoes a database URL, which may carry a password', () => {
    expect(() => loadConfig({ DATABASE_URL: 'postgres//user:s3cret@db' })).toThrow(ConfigError);
    expect(() => loadConfig({ DATABASE_URL: 'postgres//user:s3cret@db' })).not.toThrow(/s3cret/);
    expect(() => loadConfig({ DATABASE_URL: 'mysql://user:s3cret@db/x' })).not.toThrow(/s3cret/);
  });

  it('accepts port 0 and IPv6 listen addresses', () => {
    expect(loadConfig({ GRPC_LISTEN: '[::1]:0' }).grpcListen).toBe('[::1]:0');
  });
});
