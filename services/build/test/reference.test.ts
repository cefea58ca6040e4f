import { DomainError } from '@stageline/errors';
import { describe, expect, it } from 'vitest';
import { mergeScopes, parseChallenge, readTokenResponse } from '../src/adapters/registry/auth.ts';
import { credentialsFromAuthJson } from '../src/adapters/registry/auth-file.ts';
import { parseManifest } from '../src/adapters/registry/manifest.ts';
import {
  formatReference,
  isLoopbackHost,
  parseReference,
  registryBaseUrl,
} from '../src/adapters/registry/reference.ts';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  const good: Array<[string, { registry: string; repository: string; tag?: string; digest?: string }]> = [
    ['nginx', { registry: 'docker.io', repository: 'library/nginx' }],
    ['nginx:1.25', { registry: 'docker.io', repository: 'library/nginx', tag: '1.25' }],
    ['team/api:v2', { registry: 'docker.io', repository: 'team/api', tag: 'v2' }],
    ['docker.io/nginx', { registry: 'docker.io', repository: 'library/nginx' }],
    ['index.docker.io/library/nginx:latest', { registry: 'docker.io', repository: 'library/nginx', tag: 'latest' }],
    [
      '127.0.0.1:5001/examples/busybox:1.36',
      { registry: '127.0.0.1:5001', repository: 'examples/busybox', tag: '1.36' },
    ],
    ['localhost/app', { registry: 'localhost', repository: 'app' }],
    ['localhost:5000/a/b/c:t', { registry: 'localhost:5000', repository: 'a/b/c', tag: 't' }],
    ['registry.example.com/team/api', { registry: 'registry.example.com', repository: 'team/api' }],
    [`ghcr.io/o/r@${D}`, { registry: 'ghcr.io', repository: 'o/r', digest: D }],
    [`ghcr.io/o/r:1.0@${D}`, { registry: 'ghcr.io', repository: 'o/r', tag: '1.0', digest: D }],
    ['[::1]:5000/x:y', { registry: '[::1]:5000', repository: 'x', tag: 'y' }],
    ['a.b/c__d/e-f.g_h:T_1.x-y', { registry: 'a.b', repository: 'c__d/e-f.g_h', tag: 'T_1.x-y' }],
    // A capitalised first component is a host (docker's rule).
    ['Registry/app', { registry: 'Registry', repository: 'app' }],
  ];
  it.each(good)('parses %s', (input, expected) => {
    const ref = parseReference(input);
    expect(ref).toEqual({ tag: undefined, digest: undefined, ...expected });
  });

  it('formats back to the fully qualified form', () => {
    expect(formatReference(parseReference('nginx:1'))).toBe('docker.io/library/nginx:1');
    expect(formatReference(parseReference(`127.0.0.1:5000/a/b:t@${D}`))).toBe(`127.0.0.1:5000/a/b:t@${D}`);
  });

  const bad: Array<[string, RegExp]> = [
    ['', /is required/],
    ['UPPER/Case', /lowercase/],
    ['docker.io/Nginx', /lowercase/],
    ['nginx:', /bad tag/],
    ['nginx:-x', /bad tag/],
    [`nginx:${'a'.repeat(129)}`, /bad tag/],
    ['nginx@sha256:abc', /malformed sha256 digest/],
    [`nginx@md5:${'a'.repeat(32)}`, /unsupported digest algorithm/],
    ['nginx@latest', /not a digest/],
    ['reg.io/', /no repository/],
    ['reg.io/a//b', /bad repository component/],
    ['reg.io/-a', /bad repository component/],
    ['reg.io/a-/b', /bad repository component/],
    ['reg.io/a..b', /bad repository component/],
    ['-bad.io/a', /bad registry host/],
    ['reg.io:99999/a', /bad registry port/],
    ['a b', /blanks/],
    [`reg.io/${'a'.repeat(260)}`, /at most 255/],
  ];
  it.each(bad)('refuses %j with INVALID_ARGUMENT naming the field', (input, message) => {
    let caught: unknown;
    try {
      parseReference(input, 'service.container.image');
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(DomainError);
    const error = caught as DomainError;
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.field).toBe('service.container.image');
    expect(error.message).toMatch(/^service\.container\.image: /);
    expect(error.message).toMatch(message);
  });
});

describe('registry addresses', () => {
  it('speaks plain HTTP to loopback and configured insecure hosts only', () => {
    const insecure = new Set(['registry.lan:5000']);
    expect(registryBaseUrl('127.0.0.1:5000', insecure)).toBe('http://127.0.0.1:5000');
    expect(registryBaseUrl('localhost:5001', insecure)).toBe('http://localhost:5001');
    expect(registryBaseUrl('[::1]:5000', insecure)).toBe('http://[::1]:5000');
    expect(registryBaseUrl('registry.lan:5000', insecure)).toBe('http://registry.lan:5000');
    expect(registryBaseUrl('registry.lan:5001', insecure)).toBe('https://registry.lan:5001');
    expect(registryBaseUrl('ghcr.io', insecure)).toBe('https://ghcr.io');
    expect(registryBaseUrl('docker.io', insecure)).toBe('https://registry-1.docker.io');
    expect(isLoopbackHost('127.9.9.9:1')).toBe(true);
    expect(isLoopbackHost('128.0.0.1:5000')).toBe(false);
    expect(isLoopbackHost('localhost.evil.com')).toBe(false);
  });
});

describe('auth helpers', () => {
  it('parses bearer challenges, quoted commas and escapes included', () => {
    expect(
      parseChallenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push"',
      ),
    ).toEqual({
      scheme: 'bearer',
      params: {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
        scope: 'repository:library/nginx:pull,push',
      },
    });
    expect(parseChallenge('Basic realm="a \\"quoted\\" realm"')).toEqual({
      scheme: 'basic',
      params: { realm: 'a "quoted" realm' },
    });
    // Several challenges: bearer is preferred.
    expect(parseChallenge('Basic realm="x", Bearer realm="https://t/token",service=reg')?.params).toEqual({
      realm: 'https://t/token',
      service: 'reg',
    });
    expect(parseChallenge('Negotiate')).toBeUndefined();
    expect(parseChallenge(null)).toBeUndefined();
  });

  it('merges scopes per repository', () => {
    expect(mergeScopes(['repository:a:pull', 'repository:a:push', 'repository:b:pull', 'repository:a:pull'])).toEqual([
      'repository:a:pull,push',
      'repository:b:pull',
    ]);
  });

  it('reads token responses (token or access_token, default 60 s)', () => {
    expect(readTokenResponse({ token: 't', expires_in: 300 }, 0)).toEqual({ token: 't', expiresAt: 290_000 });
    expect(readTokenResponse({ access_token: 'a' }, 0)).toEqual({ token: 'a', expiresAt: 50_000 });
    expect(readTokenResponse({}, 0)).toBeUndefined();
  });

  it('reads credentials from a containers auth file without ever quoting it', () => {
    const lookup = credentialsFromAuthJson(
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: Buffer.from('hub:s3cret').toString('base64') },
          'registry.lan:5000': { username: 'u', password: 'p:w' },
        },
      }),
    );
    expect(lookup('docker.io')).toEqual({ username: 'hub', password: 's3cret' });
    expect(lookup('registry.lan:5000')).toEqual({ username: 'u', password: 'p:w' });
    expect(lookup('ghcr.io')).toBeUndefined();
    expect(() => credentialsFromAuthJson('{"auths": {"x": {"auth": "bm9jb2xvbg=="}}, "s3cret": 1')).toThrow(
      /not valid JSON/,
    );
    // "bm9jb2xvbg==" is base64("nocolon"): the error names the host, never the decoded value.
    let message = '';
    try {
      credentialsFromAuthJson('{"auths": {"x": {"auth": "bm9jb2xvbg=="}}}');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/entry for x is not base64/);
    expect(message).not.toMatch(/nocolon/);
  });
});

describe('parseManifest', () => {
  const enc = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const desc = (mediaType: string, n: string) => ({ mediaType, digest: `sha256:${n.repeat(64)}`, size: 1 });

  it('reads images (config first, foreign layers left out) and indexes', () => {
    const image = parseManifest(
      enc({
        schemaVersion: 2,
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        config: desc('application/vnd.docker.container.image.v1+json', 'c'),
        layers: [
          desc('application/vnd.docker.image.rootfs.diff.tar.gzip', 'a'),
          { ...desc('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', 'f'), urls: ['https://x'] },
        ],
      }),
      'application/json',
    );
    expect(image.kind).toBe('image');
    expect(image.blobs.map((b) => b.digest[7])).toEqual(['c', 'a']);
    // An OCI index without mediaType in the body: the shape decides.
    const index = parseManifest(
      enc({ schemaVersion: 2, manifests: [desc('application/vnd.oci.image.manifest.v1+json', 'b')] }),
      'application/vnd.oci.image.index.v1+json',
    );
    expect(index.kind).toBe('index');
    expect(index.manifests).toHaveLength(1);
  });

  it('refuses schema 1 and non-JSON', () => {
    expect(() => parseManifest(enc({ schemaVersion: 1, name: 'x', fsLayers: [] }), 'application/json')).toThrow(
      /unsupported manifest type/,
    );
    expect(() => parseManifest(new TextEncoder().encode('<html>'), 'text/html')).toThrow(/not JSON/);
  });
});
