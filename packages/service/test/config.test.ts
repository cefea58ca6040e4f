import { describe, expect, it } from 'vitest';
import { ConfigError, commonConfig, integer } from '../src/index.ts';

describe('service configuration', () => {
  it('has working defaults', () => {
    expect(commonConfig({}, '127.0.0.1:50059')).toEqual({
      grpcListen: '127.0.0.1:50059',
      natsUrl: 'nats://127.0.0.1:4222',
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/stageline',
      busPrefix: 'stageline',
      logLevel: 'info',
    });
  });

  it.each([
    ['GRPC_LISTEN', 'nowhere'],
    ['NATS_URL', 'http://x'],
    ['DATABASE_URL', 'not a url'],
    ['STAGELINE_BUS_PREFIX', 'Has.Dots'],
    ['LOG_LEVEL', 'loud'],
  ])('names %s when it is wrong', (variable, value) => {
    const fail = () => commonConfig({ [variable]: value }, '127.0.0.1:1');
    expect(fail).toThrow(ConfigError);
    expect(fail).toThrow(new RegExp(`^${variable}: `));
  });

  it('never echoes a database URL, which may carry a password', () => {
    expect(() => commonConfig({ DATABASE_URL: 'postgres//user:hunter2@host' }, '127.0.0.1:1')).toThrow(
      /^(?!.*hunter2)/,
    );
  });

  it('reads bounded integers', () => {
    expect(integer('N', '7', 1, 7)).toBe(7);
    expect(() => integer('N', '8', 1, 7)).toThrow(/N: expected an integer in 1-7/);
  });
});
