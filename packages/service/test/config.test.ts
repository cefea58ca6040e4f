import { describe, expect, it } from 'vitest';
import { ConfigError, commonConfig, integer, tlsConfig } from '../src/index.ts';

// TLS has no default: every case that is not about TLS brings a directory.
const TLS = { STAGELINE_TLS_DIR: '/etc/stageline/tls' };

describe('service configuration', () => {
  it('has working defaults', () => {
    expect(commonConfig(TLS, '127.0.0.1:50059', 'planner')).toEqual({
      grpcListen: '127.0.0.1:50059',
      healthListen: '127.0.0.1:50159',
      natsUrl: 'nats://127.0.0.1:4222',
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/stageline',
      busPrefix: 'stageline',
      logLevel: 'info',
      tls: {
        ca: '/etc/stageline/tls/ca.pem',
        cert: '/etc/stageline/tls/planner.pem',
        key: '/etc/stageline/tls/planner-key.pem',
      },
    });
  });

  it.each([
    ['GRPC_LISTEN', 'nowhere'],
    ['NATS_URL', 'http://x'],
    ['NATS_URL', 'nats://a:4222,,nats://c:4222'],
    ['NATS_URL', 'nats://a:4222,http://b:4222'],
    ['STAGELINE_STREAM_REPLICAS', '0'],
    ['STAGELINE_STREAM_REPLICAS', 'three'],
    ['DATABASE_URL', 'not a url'],
    ['STAGELINE_BUS_PREFIX', 'Has.Dots'],
    ['LOG_LEVEL', 'loud'],
  ])('names %s when it is wrong', (variable, value) => {
    const fail = () => commonConfig({ ...TLS, [variable]: value }, '127.0.0.1:1', 'build');
    expect(fail).toThrow(ConfigError);
    expect(fail).toThrow(new RegExp(`^${variable}: `));
  });

  it('takes a cluster: NATS_URL as a comma-separated list of servers', () => {
    const config = commonConfig(
      {
        ...TLS,
        NATS_URL: 'nats://10.0.0.1:4222, nats://10.0.0.2:4222,nats://10.0.0.3:4222',
        STAGELINE_STREAM_REPLICAS: '3',
      },
      '127.0.0.1:1',
      'build',
    );
    expect(config.natsUrl).toBe('nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222');
  });

  it('never echoes a database URL, which may carry a password', () => {
    expect(() => commonConfig({ ...TLS, DATABASE_URL: 'postgres//user:hunter2@host' }, '127.0.0.1:1', 'build')).toThrow(
      /^(?!.*hunter2)/,
    );
  });

  describe('TLS', () => {
    it('is required: without it the error names the variable and says what to set', () => {
      const fail = () => commonConfig({}, '127.0.0.1:1', 'deploy');
      expect(fail).toThrow(ConfigError);
      expect(fail).toThrow(/^STAGELINE_TLS_CA: TLS is required: set STAGELINE_TLS_DIR/);
      expect(fail).toThrow(/deploy\.pem and deploy-key\.pem/);
      // Blank counts as unset.
      expect(() => commonConfig({ STAGELINE_TLS_DIR: '  ' }, '127.0.0.1:1', 'deploy')).toThrow(/^STAGELINE_TLS_CA: /);
    });

    it('names the first file that is neither given nor in a directory', () => {
      const fail = () => commonConfig({ STAGELINE_TLS_CA: '/s/ca.pem' }, '127.0.0.1:1', 'deploy');
      expect(fail).toThrow(ConfigError);
      expect(fail).toThrow(/^STAGELINE_TLS_CERT: TLS is required/);
      try {
        fail();
      } catch (e) {
        expect((e as ConfigError).variable).toBe('STAGELINE_TLS_CERT');
      }
    });

    it('finds ca.pem, <identity>.pem and <identity>-key.pem in STAGELINE_TLS_DIR', () => {
      expect(tlsConfig({ STAGELINE_TLS_DIR: '/run/tls/' }, 'control')).toEqual({
        ca: '/run/tls/ca.pem',
        cert: '/run/tls/control.pem',
        key: '/run/tls/control-key.pem',
      });
    });

    it('takes STAGELINE_TLS_CA, STAGELINE_TLS_CERT and STAGELINE_TLS_KEY over the directory, one by one', () => {
      expect(
        commonConfig(
          {
            STAGELINE_TLS_DIR: '/run/tls',
            STAGELINE_TLS_CERT: '/secrets/cert.pem',
            STAGELINE_TLS_KEY: '/secrets/key.pem',
          },
          '127.0.0.1:1',
          'build',
        ).tls,
      ).toEqual({ ca: '/run/tls/ca.pem', cert: '/secrets/cert.pem', key: '/secrets/key.pem' });
      // All three named: no directory needed.
      expect(
        tlsConfig(
          { STAGELINE_TLS_CA: '/s/ca.pem', STAGELINE_TLS_CERT: '/s/c.pem', STAGELINE_TLS_KEY: '/s/k.pem' },
          'build',
        ),
      ).toEqual({ ca: '/s/ca.pem', cert: '/s/c.pem', key: '/s/k.pem' });
    });
  });

  it('reads bounded integers', () => {
    expect(integer('N', '7', 1, 7)).toBe(7);
    expect(() => integer('N', '8', 1, 7)).toThrow(/N: expected an integer in 1-7/);
  });
});
