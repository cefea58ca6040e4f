// Test support: real registries (testkit), an HTTP proxy in front of one that records every request
// (and can stand in for a token service), hand-built images pushed with the client's own functions,
// and a JobContext that records what a handler reports.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JobContext } from '@stageline/bus';
import { createLogger } from '@stageline/log';
import type { control } from '@stageline/proto';
import { type RegistryClient, type RepositoryRef, sha256Digest } from '../src/adapters/registry/client.ts';
import { MEDIA_TYPES } from '../src/adapters/registry/manifest.ts';

export const silentLog = createLogger({ service: 'build-test', level: 'silent' });

export function uniqueName(prefix = 't'): string {
  return `${prefix}${randomBytes(5).toString('hex')}`;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  status: number;
  authorization: string | undefined;
}

export interface RecordingProxy {
  /** host:port, as image references name a registry. */
  readonly host: string;
  readonly requests: RecordedRequest[];
  /** Requests that write (POST, PATCH, PUT, DELETE). */
  writes(): RecordedRequest[];
  close(): Promise<void>;
}

/**
 * Answers a request itself (return true), e.g. a token endpoint or a 401; otherwise it is forwarded.
 * `hold` may delay forwarding (an abort test stalls blob downloads with it).
 */
export interface ProxyHooks {
  intercept?(req: http.IncomingMessage, res: http.ServerResponse, url: URL): boolean | Promise<boolean>;
  hold?(req: http.IncomingMessage, url: URL): Promise<void> | undefined;
}

/** A plain-HTTP proxy on 127.0.0.1 in front of `target` (host:port) that records each request. */
export async function startProxy(target: string, hooks: ProxyHooks = {}): Promise<RecordingProxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const record = (status: number): void => {
      requests.push({
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        status,
        authorization: req.headers.authorization,
      });
    };
    void (async () => {
      if (hooks.intercept !== undefined && (await hooks.intercept(req, res, url))) {
        record(res.statusCode);
        return;
      }
      await hooks.hold?.(req, url);
      // The Host header goes through unchanged: the registry builds Location URLs from it, so uploads
      // keep coming back through the proxy.
      const upstream = http.request(
        { host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          record(answer.statusCode ?? 0);
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => {
        record(502);
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      req.pipe(upstream);
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    writes: () => requests.filter((r) => r.method !== 'GET' && r.method !== 'HEAD'),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface TokenServerOptions {
  username: string;
  password: string;
  service?: string;
}

export interface TokenProxy extends RecordingProxy {
  /** Token requests: the scopes asked for and whether basic credentials came along and were right. */
  readonly tokenRequests: Array<{ scopes: string[]; service: string | null; authenticated: boolean }>;
}

/** What a registry request needs, as distribution's token auth computes it. */
function neededScopes(method: string, url: URL): string[] {
  const match = /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(url.pathname);
  if (match?.[1] === undefined) return [];
  const write = !(method === 'GET' || method === 'HEAD');
  const scopes = [`repository:${match[1]}:${write ? 'pull,push' : 'pull'}`];
  const from = url.searchParams.get('from');
  if (method === 'POST' && url.searchParams.has('mount') && from !== null) scopes.push(`repository:${from}:pull`);
  return scopes;
}

function covers(granted: ReadonlySet<string>, needed: string): boolean {
  const colon = needed.lastIndexOf(':');
  const resource = needed.slice(0, colon);
  return needed
    .slice(colon + 1)
    .split(',')
    .every((action) => granted.has(`${resource}:${action}`));
}

/**
 * A registry behind bearer-token auth, as Docker Hub does it: requests without a token covering their
 * scope get 401 + `WWW-Authenticate: Bearer realm=…,service=…,scope=…`; `/token` (this test code)
 * issues tokens for the asked scopes only to the right basic credentials. The registry itself is real.
 */
export async function startTokenProxy(target: string, options: TokenServerOptions): Promise<TokenProxy> {
  const service = options.service ?? 'stageline-test-registry';
  const tokens = new Map<string, Set<string>>();
  const tokenRequests: TokenProxy['tokenRequests'] = [];
  let realm = '';
  const proxy = await startProxy(target, {
    intercept(req, res, url) {
      if (url.pathname === '/token') {
        const expected = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString('base64')}`;
        const authenticated = req.headers.authorization === expected;
        const scopes = url.searchParams.getAll('scope');
        tokenRequests.push({ scopes, service: url.searchParams.get('service'), authenticated });
        if (!authenticated) {
          res.writeHead(401, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ details: 'incorrect username or password' }));
          return true;
        }
        const token = randomBytes(16).toString('hex');
        const granted = new Set<string>();
        for (const scope of scopes.flatMap((s) => s.split(' '))) {
          const colon = scope.lastIndexOf(':');
          for (const action of scope.slice(colon + 1).split(',')) granted.add(`${scope.slice(0, colon)}:${action}`);
        }
        tokens.set(token, granted);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ token, expires_in: 300 }));
        return true;
      }
      const needed = neededScopes(req.method ?? 'GET', url);
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const granted = bearer === undefined ? undefined : tokens.get(bearer);
      if (granted !== undefined && needed.every((scope) => covers(granted, scope))) return false;
      const scope = needed[0] === undefined ? '' : `,scope="${needed[0]}"`;
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer realm="${realm}",service="${service}"${scope}`,
        'docker-distribution-api-version': 'registry/2.0',
      });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
      return true;
    },
  });
  realm = `http://${proxy.host}/token`;
  return Object.assign(proxy, { tokenRequests });
}

/** A registry behind HTTP basic auth (the registry itself is real). */
export async function startBasicAuthProxy(target: string, username: string, password: string): Promise<RecordingProxy> {
  const expected = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  return startProxy(target, {
    intercept(req, res) {
      if (req.headers.authorization === expected) return false;
      res.writeHead(401, { 'www-authenticate': 'Basic realm="stageline-test"' });
      res.end();
      return true;
    },
  });
}

// --- images built by hand ---------------------------------------------------------------------

export interface PushedImage {
  digest: string;
  mediaType: string;
  size: number;
  blobs: string[];
}

export interface ImageSpec {
  /** Sizes of random layers (default one of 4 KiB). */
  layers?: number[];
  format?: 'oci' | 'docker';
  architecture?: string;
}

/** Pushes a config and random layers, then an image manifest under `reference` (a tag, or its digest if omitted). */
export async function pushImage(
  client: RegistryClient,
  repo: RepositoryRef,
  reference: string | undefined,
  spec: ImageSpec = {},
): Promise<PushedImage> {
  const docker = spec.format === 'docker';
  const architecture = spec.architecture ?? 'amd64';
  const layers = await Promise.all(
    (spec.layers ?? [4096]).map(async (size) => {
      const bytes = randomBytes(size);
      return { digest: await client.pushBlob(repo, bytes), size };
    }),
  );
  const config = new TextEncoder().encode(
    JSON.stringify({
      architecture,
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    }),
  );
  const configDigest = await client.pushBlob(repo, config);
  const mediaType = docker ? MEDIA_TYPES.DOCKER_MANIFEST : MEDIA_TYPES.OCI_MANIFEST;
  const manifest = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: {
        mediaType: docker ? MEDIA_TYPES.DOCKER_CONFIG : MEDIA_TYPES.OCI_CONFIG,
        digest: configDigest,
        size: config.length,
      },
      layers: layers.map((l) => ({
        mediaType: docker ? MEDIA_TYPES.DOCKER_LAYER_GZIP : MEDIA_TYPES.OCI_LAYER_GZIP,
        digest: l.digest,
        size: l.size,
      })),
    }),
  );
  const digest = sha256Digest(manifest);
  await client.putManifest(repo, reference ?? digest, { bytes: manifest, mediaType });
  return { digest, mediaType, size: manifest.length, blobs: [configDigest, ...layers.map((l) => l.digest)] };
}

/** Pushes one image per architecture (by digest) and an index listing them under `tag`. */
export async function pushIndex(
  client: RegistryClient,
  repo: RepositoryRef,
  tag: string,
  architectures: string[],
  format: 'oci' | 'docker' = 'oci',
): Promise<{ digest: string; children: PushedImage[] }> {
  const children: PushedImage[] = [];
  for (const architecture of architectures) {
    children.push(await pushImage(client, repo, undefined, { architecture, format, layers: [2048, 3072] }));
  }
  const mediaType = format === 'docker' ? MEDIA_TYPES.DOCKER_LIST : MEDIA_TYPES.OCI_INDEX;
  const index = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: children.map((c, i) => ({
        mediaType: c.mediaType,
        digest: c.digest,
        size: c.size,
        platform: { architecture: architectures[i], os: 'linux' },
      })),
    }),
  );
  const digest = await client.putManifest(repo, tag, { bytes: index, mediaType });
  return { digest, children };
}

// --- a JobContext that records ----------------------------------------------------------------

export interface RecordingContext extends JobContext {
  readonly lines: string[];
  readonly started: Array<{ kind: control.StepKind; message: string | undefined }>;
  readonly finished: control.Step[];
  heartbeats: number;
}

export function recordingContext(signal: AbortSignal = new AbortController().signal): RecordingContext {
  const ctx: RecordingContext = {
    jobId: uniqueName('job-'),
    deploymentId: uniqueName('dep-'),
    serviceId: uniqueName('svc-'),
    attempt: 1,
    signal,
    log: silentLog,
    lines: [],
    started: [],
    finished: [],
    heartbeats: 0,
    output(message) {
      ctx.lines.push(message);
    },
    async stepStarted(kind, message) {
      ctx.started.push({ kind, message });
    },
    async stepFinished(step) {
      ctx.finished.push(step);
    },
    working() {
      ctx.heartbeats++;
    },
    // One delivery only here: the lease is always this copy's.
    fence: async () => {},
  };
  return ctx;
}
