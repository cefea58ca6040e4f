// The registry client and mirrorImage against real registries: the mirror (resolveRegistry: 127.0.0.1:5000
// when it runs, else the docker-registry binary) and a second registry of this file's own (the binary),
// each behind a recording proxy so tests can count what went over the wire.
import { randomBytes } from 'node:crypto';
import { DomainError } from '@stageline/errors';
import { type ResolvedServer, resolveRegistry } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient, type RepositoryRef, sha256Digest } from '../src/adapters/registry/client.ts';
import { MEDIA_TYPES } from '../src/adapters/registry/manifest.ts';
import { type MirrorProgress, mirrorImage } from '../src/adapters/registry/mirror.ts';
import { type ImageReference, parseReference } from '../src/adapters/registry/reference.ts';
import {
  pushImage,
  pushIndex,
  type RecordingProxy,
  startBasicAuthProxy,
  startProxy,
  startTokenProxy,
  uniqueName,
} from './support.ts';

const CHUNK = 64 * 1024;

let mirrorServer: ResolvedServer;
let externalServer: ResolvedServer;
let mirror: RecordingProxy;
let external: RecordingProxy;
const proxies: RecordingProxy[] = [];
// Small chunks, so a 200 KiB layer takes several PATCHes.
const client = new RegistryClient({ chunkSize: CHUNK });
const prefix = uniqueName('t');

beforeAll(async () => {
  mirrorServer = await resolveRegistry();
  externalServer = await resolveRegistry({ strategy: 'binary' });
  mirror = await startProxy(new URL(mirrorServer.url).host);
  external = await startProxy(new URL(externalServer.url).host);
  proxies.push(mirror, external);
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await externalServer?.stop();
});

function repo(proxy: RecordingProxy, path: string): RepositoryRef {
  return { registry: proxy.host, repository: `${prefix}/${path}` };
}
function ref(proxy: RecordingProxy, path: string, tag: string): ImageReference {
  return { ...repo(proxy, path), tag };
}

/** Requests recorded from now on. */
function since(proxy: RecordingProxy): () => RecordingProxy['requests'] {
  const start = proxy.requests.length;
  return () => proxy.requests.slice(start);
}

describe('mirrorImage across registries', () => {
  it('copies manifest and blobs (chunked), then hits the cache without uploading anything', async () => {
    const source = ref(external, 'app', '1.0');
    const pushed = await pushImage(client, source, '1.0', { layers: [200 * 1024, 1000] });
    const destination = ref(mirror, 'demo/staging/app', '1.0');

    const copying = since(mirror);
    const result = await mirrorImage(client, source, destination);
    expect(result.cacheHit).toBe(false);
    expect(result.digest).toBe(pushed.digest);
    expect(result.blobs).toEqual({ exists: 0, mounted: 0, copied: 3 });
    expect(result.bytesCopied).toBe(200 * 1024 + 1000 + (await blobSize(source, pushed.blobs[0]!)));

    // The mirror has the manifest under the tag with the same digest, and every blob.
    const head = await client.headManifest(destination);
    expect(head?.digest).toBe(pushed.digest);
    expect(head?.mediaType).toBe(MEDIA_TYPES.OCI_MANIFEST);
    for (const blob of pushed.blobs) expect(await client.blobExists(destination, blob)).toBe(true);
    // Straight from the registry, not through the client: the bytes are the source's.
    const raw = await fetch(`${mirrorServer.url}/v2/${destination.repository}/blobs/${pushed.blobs[1]}`);
    expect(sha256Digest(new Uint8Array(await raw.arrayBuffer()))).toBe(pushed.blobs[1]);

    // Chunked: POST, PATCH with Content-Range per 64 KiB chunk (200 KiB → 4), PUT ?digest=.
    const patches = copying().filter((r) => r.method === 'PATCH');
    expect(patches.length).toBe(4 + 1 + 1);
    const commits = copying().filter((r) => r.method === 'PUT' && r.query.has('digest'));
    expect(commits.map((r) => r.query.get('digest')).sort()).toEqual([...pushed.blobs].sort());

    // Again: a cache hit, and nothing written to the mirror.
    const again = since(mirror);
    const hit = await mirrorImage(client, source, destination);
    expect(hit.cacheHit).toBe(true);
    expect(hit.digest).toBe(pushed.digest);
    expect(again().filter((r) => r.method !== 'GET' && r.method !== 'HEAD')).toEqual([]);
    expect(again().filter((r) => r.path.includes('/blobs/'))).toEqual([]);
  });

  it('follows a tag that moved in the source', async () => {
    const source = ref(external, 'moving', 'stable');
    await pushImage(client, source, 'stable', { layers: [5000] });
    const destination = ref(mirror, 'demo/prod/moving', 'stable');
    await mirrorImage(client, source, destination);
    const second = await pushImage(client, source, 'stable', { layers: [6000] });
    const result = await mirrorImage(client, source, destination);
    expect(result.cacheHit).toBe(false);
    expect(result.digest).toBe(second.digest);
    expect((await client.headManifest(destination))?.digest).toBe(second.digest);
  });

  it('keeps Docker schema 2 manifests as they are (same digest, same media type)', async () => {
    const source = ref(external, 'docker-format', 'v1');
    const pushed = await pushImage(client, source, 'v1', { format: 'docker' });
    const destination = ref(mirror, 'demo/docker-format', 'v1');
    const result = await mirrorImage(client, source, destination);
    expect(result.digest).toBe(pushed.digest);
    expect(result.mediaType).toBe(MEDIA_TYPES.DOCKER_MANIFEST);
    expect((await client.headManifest(destination))?.mediaType).toBe(MEDIA_TYPES.DOCKER_MANIFEST);
  });

  it('copies a multi-arch index whole: every platform manifest and its blobs', async () => {
    const source = ref(external, 'multi', '2.0');
    const index = await pushIndex(client, source, '2.0', ['amd64', 'arm64']);
    const destination = ref(mirror, 'demo/multi', '2.0');
    const result = await mirrorImage(client, source, destination);
    expect(result.digest).toBe(index.digest);
    expect(result.mediaType).toBe(MEDIA_TYPES.OCI_INDEX);
    expect(result.manifests.copied).toBe(3);
    const top = await client.getManifest(destination);
    expect(top.digest).toBe(index.digest);
    expect(top.parsed.manifests.map((m) => m.platform?.architecture)).toEqual(['amd64', 'arm64']);
    for (const child of index.children) {
      expect((await client.headManifest({ ...destination, digest: child.digest }))?.digest).toBe(child.digest);
      for (const blob of child.blobs) expect(await client.blobExists(destination, blob)).toBe(true);
    }
    // A Docker manifest list as well.
    const list = await pushIndex(client, ref(external, 'multi-docker', '1'), '1', ['amd64', 'arm'], 'docker');
    const copied = await mirrorImage(client, ref(external, 'multi-docker', '1'), ref(mirror, 'demo/multi-docker', '1'));
    expect(copied.digest).toBe(list.digest);
    expect(copied.mediaType).toBe(MEDIA_TYPES.DOCKER_LIST);
  });

  it('mirrors a source pinned by digest without asking for its tag', async () => {
    const source = ref(external, 'pinned', 'x');
    const pushed = await pushImage(client, source, 'x');
    const destination = ref(mirror, 'demo/pinned', 'x');
    const log = since(external);
    const result = await mirrorImage(client, { ...source, digest: pushed.digest }, destination);
    expect(result.digest).toBe(pushed.digest);
    expect(log().some((r) => r.path.endsWith('/manifests/x'))).toBe(false);
  });

  it('fails with NOT_FOUND naming the image when the source does not exist', async () => {
    const missing = parseReference(`${external.host}/${prefix}/nope:1`);
    const error = await mirrorImage(client, missing, ref(mirror, 'demo/nope', '1')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).code).toBe('NOT_FOUND');
    expect((error as DomainError).message).toBe(`image ${external.host}/${prefix}/nope:1 not found in its registry`);
  });

  it('fails UNAVAILABLE, naming the registry, when it does not answer', async () => {
    const down = new RegistryClient({ attempts: 1 });
    const closed = await startProxy('127.0.0.1:1');
    await closed.close();
    const error = await down.headManifest(parseReference(`${closed.host}/a/b:c`)).catch((e: unknown) => e);
    expect((error as DomainError).code).toBe('UNAVAILABLE');
    expect((error as DomainError).message).toContain(`registry ${closed.host} is unreachable`);
  });
});

describe('cross-repository mounts', () => {
  it('mounts blobs within one registry instead of copying them', async () => {
    const source = ref(mirror, 'mount/source', '1');
    const pushed = await pushImage(client, source, '1', { layers: [100 * 1024] });
    const log = since(mirror);
    const result = await mirrorImage(client, source, ref(mirror, 'mount/target', '1'));
    expect(result.digest).toBe(pushed.digest);
    expect(result.blobs).toEqual({ exists: 0, mounted: 2, copied: 0 });
    const mounts = log().filter((r) => r.method === 'POST' && r.query.has('mount'));
    expect(mounts.map((r) => [r.query.get('from'), r.status])).toEqual([
      [source.repository, 201],
      [source.repository, 201],
    ]);
    expect(log().filter((r) => r.method === 'PATCH')).toEqual([]);
    expect(log().filter((r) => r.method === 'GET' && r.path.includes('/blobs/'))).toEqual([]);
  });

  it('mounts from repositories named by the caller (earlier mirrors) when copying across registries', async () => {
    const source = ref(external, 'shared-base', '1');
    const pushed = await pushImage(client, source, '1', { layers: [50 * 1024] });
    await mirrorImage(client, source, ref(mirror, 'demo/a/web', '1'));
    const log = since(mirror);
    const result = await mirrorImage(client, source, ref(mirror, 'demo/a/api', '1'), {
      mountFrom: [`${prefix}/demo/a/web`],
    });
    expect(result.digest).toBe(pushed.digest);
    expect(result.blobs).toEqual({ exists: 0, mounted: 2, copied: 0 });
    expect(log().filter((r) => r.method === 'PATCH')).toEqual([]);
  });

  it('falls back to uploading into the session a refused mount (202) opened', async () => {
    const target = repo(mirror, 'mount/fallback');
    const bytes = randomBytes(10_000);
    const digest = sha256Digest(bytes);
    // The "from" repository does not have the blob: the registry answers 202 with an upload session.
    const mount = await client.mountBlob(target, digest, `${prefix}/mount/empty`);
    expect(mount.mounted).toBe(false);
    if (mount.mounted) return;
    await client.uploadBlob(target, digest, bytes, { uploadUrl: mount.uploadUrl });
    expect(await client.blobExists(target, digest)).toBe(true);
  });

  it('streams uploads: each chunk is sent before the next is read from the source', async () => {
    const target = repo(mirror, 'upload/streamed');
    const pieces = Array.from({ length: 6 }, () => randomBytes(CHUNK));
    const whole = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
    pieces.reduce((offset, p) => {
      whole.set(p, offset);
      return offset + p.length;
    }, 0);
    const digest = sha256Digest(whole);
    const log = since(mirror);
    const patchesSeenAtRead: number[] = [];
    async function* source(): AsyncIterable<Uint8Array> {
      for (const piece of pieces) {
        patchesSeenAtRead.push(log().filter((r) => r.method === 'PATCH').length);
        yield piece;
      }
    }
    await client.uploadBlob(target, digest, source());
    // Piece k is read only after the k-1 chunks before it reached the registry: never all at once.
    expect(patchesSeenAtRead).toEqual([0, 1, 2, 3, 4, 5]);
    expect(await client.blobExists(target, digest)).toBe(true);
  });

  it('refuses content that does not match its digest, before the registry commits it', async () => {
    const target = repo(mirror, 'upload/bad');
    const claimed = sha256Digest(new Uint8Array([1, 2, 3]));
    const error = await client.uploadBlob(target, claimed, new Uint8Array([4, 5, 6])).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/does not match its digest/);
    expect(await client.blobExists(target, claimed)).toBe(false);
  });

  it('reads a blob again when the source cuts its answer short (empty, or failing mid-stream)', async () => {
    const source = ref(external, 'flaky', '1');
    const pushed = await pushImage(client, source, '1', { layers: [150 * 1024] });
    const layer = pushed.blobs[1]!; // [0] is the config
    // The network between Stageline and the source, not the registry, misbehaves: the first GET of the
    // layer answers 200 with no bytes, the second fails half-way, the third is left alone.
    let gets = 0;
    const flaky = new RegistryClient({
      chunkSize: CHUNK,
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        if (init?.method !== 'GET' || !String(input).endsWith(`/blobs/${layer}`)) return response;
        gets++;
        if (gets === 1) {
          await response.body?.cancel();
          return new Response(new Uint8Array(0), { status: 200 });
        }
        if (gets === 2) return new Response(failingAfter(response.body!, CHUNK + 10), { status: 200 });
        return response;
      },
    });
    const events: MirrorProgress[] = [];
    const result = await mirrorImage(flaky, source, ref(mirror, 'flaky/copy', '1'), {
      onProgress: (e) => events.push(e),
    });
    expect(result.digest).toBe(pushed.digest);
    expect(gets).toBe(3);
    const retries = events.filter((e) => e.type === 'retry');
    expect(retries.map((e) => e.attempt)).toEqual([1, 2]);
    expect(retries[0]!.reason).toMatch(/got 0 bytes/);
    expect(retries[1]!.reason).toMatch(/reading blob .* from its source failed/);
    const raw = await fetch(`${mirrorServer.url}/v2/${prefix}/flaky/copy/blobs/${layer}`);
    expect(sha256Digest(new Uint8Array(await raw.arrayBuffer()))).toBe(layer);
  });

  it('gives up after three reads that do not verify, and commits nothing', async () => {
    const source = ref(external, 'corrupt', '1');
    const pushed = await pushImage(client, source, '1', { layers: [4000] });
    const layer = pushed.blobs[1]!; // [0] is the config
    const corrupt = new RegistryClient({
      chunkSize: CHUNK,
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        if (init?.method !== 'GET' || !String(input).endsWith(`/blobs/${layer}`)) return response;
        const bytes = new Uint8Array(await response.arrayBuffer());
        bytes[0] = bytes[0]! ^ 0xff;
        return new Response(bytes, { status: 200 });
      },
    });
    const destination = ref(mirror, 'corrupt/copy', '1');
    const error = await mirrorImage(corrupt, source, destination).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DomainError);
    expect((error as Error).message).toMatch(/does not match its digest .* the source sent something else/);
    expect(await client.blobExists(destination, layer)).toBe(false);
    expect(await client.headManifest(destination)).toBeUndefined();
  });
});

/** A stream that passes `limit` bytes of `body` through, then fails as a cut connection does. */
function failingAfter(body: ReadableStream<Uint8Array>, limit: number): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let passed = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (passed >= limit) {
        await reader.cancel();
        controller.error(new TypeError('terminated'));
        return;
      }
      const { done, value } = await reader.read();
      if (done) return controller.close();
      const piece = value.subarray(0, Math.min(value.length, limit - passed));
      passed += piece.length;
      controller.enqueue(piece);
    },
  });
}

describe('authentication', () => {
  it('answers a bearer challenge with a token for the scopes asked (credentials sent to the realm only)', async () => {
    const guarded = await startTokenProxy(new URL(externalServer.url).host, {
      username: 'robot',
      password: 'pa55w0rd',
    });
    proxies.push(guarded);
    const authed = new RegistryClient({
      chunkSize: CHUNK,
      credentials: (registry) => (registry === guarded.host ? { username: 'robot', password: 'pa55w0rd' } : undefined),
    });
    // Push through the guarded registry (pull,push scope), then mirror from it (pull scope).
    const source = ref(guarded, 'private/app', '3');
    const pushed = await pushImage(authed, source, '3', { layers: [70 * 1024] });
    const result = await mirrorImage(authed, source, ref(mirror, 'demo/private-app', '3'));
    expect(result.digest).toBe(pushed.digest);

    expect(guarded.tokenRequests.length).toBeGreaterThan(0);
    expect(guarded.tokenRequests.every((t) => t.authenticated && t.service === 'stageline-test-registry')).toBe(true);
    expect(guarded.tokenRequests.flatMap((t) => t.scopes)).toContain(`repository:${source.repository}:pull,push`);
    // Tokens are reused: far fewer token requests than registry requests, and each 401 is answered once.
    const registryRequests = guarded.requests.filter((r) => r.path.startsWith('/v2/'));
    expect(guarded.tokenRequests.length).toBeLessThan(registryRequests.length / 3);
    // The password went to the token endpoint only, never to the registry.
    const basic = `Basic ${Buffer.from('robot:pa55w0rd').toString('base64')}`;
    expect(registryRequests.some((r) => r.authorization === basic)).toBe(false);
  });

  it('reports refused credentials without the password', async () => {
    const guarded = await startTokenProxy(new URL(externalServer.url).host, { username: 'robot', password: 'right' });
    proxies.push(guarded);
    const wrong = new RegistryClient({ credentials: () => ({ username: 'robot', password: 'wr0ng-s3cret' }) });
    const error = await wrong.headManifest(ref(guarded, 'private/app', '3')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DomainError);
    const message = (error as Error).message;
    expect(message).toMatch(/token service of .* refused the configured access \(HTTP 401\)/);
    expect(message).not.toContain('wr0ng-s3cret');
    expect(JSON.stringify(error)).not.toContain('wr0ng-s3cret');
  });

  it('sends basic credentials when the registry asks for them', async () => {
    const guarded = await startBasicAuthProxy(new URL(externalServer.url).host, 'basic-user', 'basic-pass');
    proxies.push(guarded);
    const anonymous = new RegistryClient();
    const refused = await anonymous.headManifest(ref(guarded, 'app', '1')).catch((e: unknown) => e);
    expect((refused as DomainError).message).toMatch(/access denied/);

    const authed = new RegistryClient({ credentials: () => ({ username: 'basic-user', password: 'basic-pass' }) });
    const pushed = await pushImage(authed, ref(guarded, 'basic/app', '1'), '1');
    expect((await authed.headManifest(ref(guarded, 'basic/app', '1')))?.digest).toBe(pushed.digest);
    // After the first challenge, credentials go up front: one 401 in all.
    expect(guarded.requests.filter((r) => r.status === 401 && r.authorization !== undefined)).toEqual([]);
  });
});

describe('cancel', () => {
  it('aborts a copy in flight when the signal fires', async () => {
    const source = ref(external, 'slow', '1');
    await pushImage(client, source, '1', { layers: [30 * 1024] });
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const controller = new AbortController();
    // Blob downloads stall until released; the first one to arrive triggers the abort.
    const stalling = await startProxy(new URL(externalServer.url).host, {
      hold: (req, url) => {
        if (req.method !== 'GET' || !url.pathname.includes('/blobs/')) return undefined;
        controller.abort(new Error('run canceled'));
        return held;
      },
    });
    proxies.push(stalling);
    const destination = ref(mirror, 'demo/slow', '1');
    const error = await mirrorImage(client, ref(stalling, 'slow', '1'), destination, {
      signal: controller.signal,
    }).catch((e: unknown) => e);
    release();
    expect((error as Error).message).toBe('run canceled');
    expect(await client.headManifest(destination)).toBeUndefined();
  });
});

async function blobSize(repository: RepositoryRef, digest: string): Promise<number> {
  const response = await fetch(`http://${repository.registry}/v2/${repository.repository}/blobs/${digest}`, {
    method: 'HEAD',
  });
  return Number(response.headers.get('content-length'));
}
