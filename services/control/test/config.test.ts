import { ConfigError } from '@stageline/service';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';

const TLS = { STAGELINE_TLS_DIR: '/etc/stageline/tls' };

describe('control config: what environments may name (issue 21)', () => {
  it('reads the registered kube contexts and the source policy; unset, nothing is allowed', () => {
    expect(loadConfig(TLS)).toMatchObject({ kubeContexts: [], sourcePolicy: { prefixes: [], hosts: [] } });
    const config = loadConfig({
      ...TLS,
      STAGELINE_KUBE_CONTEXTS: 'prod-eu,staging',
      STAGELINE_SOURCE_ALLOW: 'file:///var/lib/stageline/repos/,127.0.0.1:5001',
    });
    expect(config.kubeContexts).toEqual(['prod-eu', 'staging']);
    expect(config.sourcePolicy).toEqual({ prefixes: ['file:///var/lib/stageline/repos/'], hosts: ['127.0.0.1:5001'] });
  });

  it.each([
    ['STAGELINE_KUBE_CONTEXTS', 'ok,-bad'],
    ['STAGELINE_SOURCE_ALLOW', 'not a host'],
    ['STAGELINE_SOURCE_ALLOW', 'file:///no/trailing/slash'],
  ])('names the variable at fault: %s=%s', (variable, value) => {
    let caught: unknown;
    try {
      loadConfig({ ...TLS, [variable]: value });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).variable).toBe(variable);
  });
});

describe('control config: the web console', () => {
  it('serves it on 127.0.0.1:8443 by default, elsewhere when asked, not at all with "off"', () => {
    expect(loadConfig(TLS).consoleListen).toBe('127.0.0.1:8443');
    expect(loadConfig({ ...TLS, STAGELINE_CONSOLE_LISTEN: '0.0.0.0:9443' }).consoleListen).toBe('0.0.0.0:9443');
    expect(loadConfig({ ...TLS, STAGELINE_CONSOLE_LISTEN: 'off' }).consoleListen).toBeUndefined();
    expect(() => loadConfig({ ...TLS, STAGELINE_CONSOLE_LISTEN: '8443' })).toThrow(/STAGELINE_CONSOLE_LISTEN/);
  });
});
