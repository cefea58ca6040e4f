import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkImageSource,
  checkKubeContext,
  checkNamespace,
  checkSourceUrl,
  DENY_ALL,
  defaultNamespace,
  HELM_RELEASE_MAX,
  helmReleaseName,
  parseKubeContexts,
  parseSourcePolicy,
  RESERVED_NAMESPACES,
} from '../src/index.ts';

const label = fc
  .tuple(fc.stringMatching(/^[a-z0-9]$/), fc.stringMatching(/^[a-z0-9-]{0,20}$/), fc.stringMatching(/^[a-z0-9]$/))
  .map(([a, mid, z]) => (mid === '' && a === z ? a : `${a}${mid}${z}`));
const longLabel = fc.oneof(label, fc.stringMatching(/^[a-z][a-z0-9-]{40,61}[a-z]$/));

describe('the namespace rule', () => {
  it('the finding: a-b/c and a/b-c get different namespaces', () => {
    expect(defaultNamespace('a-b', 'c')).toBe('a--b-c');
    expect(defaultNamespace('a', 'b-c')).toBe('a-b-c');
    expect(defaultNamespace('demo', 'staging')).toBe('demo-staging');
  });

  it('is injective while it fits a DNS label, and always gives one', () => {
    fc.assert(
      fc.property(label, label, label, label, (p1, n1, p2, n2) => {
        const a = defaultNamespace(p1, n1);
        const b = defaultNamespace(p2, n2);
        if (p1 !== p2 || n1 !== n2) expect(a).not.toBe(b);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(longLabel, longLabel, (p, n) => {
        const ns = defaultNamespace(p, n);
        expect(ns.length).toBeLessThanOrEqual(63);
        expect(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(ns)).toBe(true);
      }),
    );
  });

  it('refuses reserved namespaces and non-labels', () => {
    for (const ns of RESERVED_NAMESPACES) expect(checkNamespace(ns)).toContain('is reserved');
    expect(checkNamespace('Kube_System')).toContain('DNS label');
    expect(checkNamespace('kube-staging')).toBeUndefined();
  });

  it("gives Helm releases of two environments different names, within Helm's limit", () => {
    expect(helmReleaseName('env-1', 'web')).not.toBe(helmReleaseName('env-2', 'web'));
    expect(helmReleaseName('env-1', 'web')).toMatch(/^web-[0-9a-f]{12}$/);
    fc.assert(
      fc.property(fc.uuid(), longLabel, longLabel, (env, s1, s2) => {
        const a = helmReleaseName(env, s1);
        expect(a.length).toBeLessThanOrEqual(HELM_RELEASE_MAX);
        expect(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(a)).toBe(true);
        if (s1 !== s2) expect(a).not.toBe(helmReleaseName(env, s2));
      }),
    );
  });
});

describe('kube contexts', () => {
  it('only registered contexts (or none: the current one) may be named', () => {
    const registered = parseKubeContexts(' prod-eu, staging ,');
    expect(registered).toEqual(['prod-eu', 'staging']);
    expect(checkKubeContext(registered, 'staging')).toBeUndefined();
    expect(checkKubeContext(registered, '')).toBeUndefined();
    expect(checkKubeContext(registered, 'kind-admin')).toContain('"kind-admin" is not registered');
    expect(checkKubeContext([], 'any')).toContain('none is registered');
    expect(() => parseKubeContexts('ok,-bad')).toThrow('"-bad"');
  });
});

describe('the source policy', () => {
  const dev = parseSourcePolicy('file:///var/lib/stageline/repos/,127.0.0.1:5001');

  it.each([
    ['file:///etc/passwd', 'file'],
    ['file:///var/lib/stageline/repos/../../../etc/x.git', 'file'],
    ['http://127.0.0.1:8080/a.git', 'loopback'],
    ['http://localhost/a.git', 'loopback'],
    ['http://2130706433/a.git', 'loopback'],
    ['http://[::1]/a.git', 'loopback'],
    ['http://[::ffff:127.0.0.1]/a.git', 'loopback'],
    ['http://169.254.169.254/latest/meta-data', 'link-local'],
    ['https://10.0.0.5/a.git', 'private'],
    ['ssh://git@192.168.1.2/a.git', 'private'],
    ['git@172.16.0.1:team/a.git', 'private'],
    ['oci://[fd00::1]/charts/web', 'private'],
  ])('refuses %s (rule %s) under the dev policy', (url, rule) => {
    expect(checkSourceUrl(dev, url)).toContain(`rule ${rule}`);
  });

  it('allows public hosts, and what the operator allows', () => {
    expect(checkSourceUrl(DENY_ALL, 'https://github.com/org/repo.git')).toBeUndefined();
    expect(checkSourceUrl(DENY_ALL, 'git@github.com:org/repo.git')).toBeUndefined();
    expect(checkSourceUrl(dev, 'file:///var/lib/stageline/repos/api.git')).toBeUndefined();
    expect(checkSourceUrl(DENY_ALL, 'file:///var/lib/stageline/repos/api.git')).toContain('rule file');
    expect(checkSourceUrl(dev, 'http://127.0.0.1:5001/charts')).toBeUndefined();
    expect(checkSourceUrl(parseSourcePolicy('10.1.2.3'), 'https://10.1.2.3:8443/a.git')).toBeUndefined();
  });

  it('judges image registries by their host', () => {
    expect(checkImageSource(dev, '127.0.0.1:5001/examples/busybox')).toBeUndefined();
    expect(checkImageSource(dev, '127.0.0.1:5000/examples/busybox')).toContain('rule loopback');
    expect(checkImageSource(dev, 'localhost/x')).toContain('rule loopback');
    expect(checkImageSource(dev, '169.254.169.254/x')).toContain('rule link-local');
    expect(checkImageSource(DENY_ALL, 'nginx')).toBeUndefined();
    expect(checkImageSource(DENY_ALL, 'library/nginx')).toBeUndefined();
    expect(checkImageSource(DENY_ALL, 'ghcr.io/org/app')).toBeUndefined();
  });

  it('refuses malformed policies, naming the entry', () => {
    expect(() => parseSourcePolicy('file:///var/lib/stageline/repos')).toThrow('must name a directory');
    expect(() => parseSourcePolicy('not a host')).toThrow('"not a host"');
  });
});
