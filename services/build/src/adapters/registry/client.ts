// A client of the OCI distribution API (https://github.com/opencontainers/distribution-spec), on node's
// fetch: manifests (index, OCI and Docker), blob existence checks, cross-repository mounts, chunked
// uploads streamed from a source, bearer-token and basic auth. Plain HTTP only for loopback hosts and
// hosts configured as insecure.
import { createHash } from 'node:crypto';
import { DomainError } from '@stageline/errors';
import type { Logger } from '@stageline/log';
import {
  basicAuthorization,
  type Challenge,
  type CredentialsLookup,
  mergeScopes,
  parseChallenge,
  readTokenResponse,
} from './auth.ts';
import { MANIFEST_ACCEPT, type ParsedManifest, parseManifest } from './manifest.ts';
import { formatReference, type ImageReference, registryBaseUrl } from './reference.ts';

/** A repository in a registry: `{ registry: '127.0.0.1:5000', repository: 'demo/staging/web' }`. */
export type RepositoryRef = Pick<ImageReference, 'registry' | 'repository'>;

export interface RegistryClientOptions {
  /** Hosts (host[:port]) spoken to in plain HTTP besides loopback ones, as registries.conf `insecure = true`. */
  insecureHosts?: Iterable<string>;
  credentials?: CredentialsLookup;
  /** Size of each PATCH of a chunked upload (default 8 MiB); the registry's OCI-Chunk-Min-Length wins if larger. */
  chunkSize?: number;
  /** Attempts for idempotent requests (GET/HEAD) that met a network error or a 429/502/503/504 (default 3). */
  attempts?: number;
  log?: Logger;
  /** For tests of this client only: another fetch. Production uses node's. */
  fetch?: typeof fetch;
  userAgent?: string;
}

export interface ManifestHead {
  digest: string;
  mediaType: string;
  size: number;
}

export interface Manifest extends ManifestHead {
  bytes: Uint8Array;
  parsed: ParsedManifest;
}

export type MountResult = { mounted: true } | { mounted: false; uploadUrl: string };

export interface UploadOptions {
  signal?: AbortSignal | undefined;
  /** An upload session already open (a mount answered 202 with one); otherwise one is started. */
  uploadUrl?: string | undefined;
  /** Called after each chunk the registry accepted, with the bytes sent so far. */
  onChunk?: ((sent: number) => void) | undefined;
}

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

interface RequestSpec {
  method: Method;
  registry: string;
  /** A path (`/v2/...`) or an absolute URL (a Location header). */
  url: string;
  /** What this request needs, e.g. `repository:demo/web:pull,push`; used to ask for bearer tokens. */
  scopes: readonly string[];
  headers?: Record<string, string>;
  body?: Uint8Array;
  signal?: AbortSignal | undefined;
}

const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;
/** The distribution spec lets registries refuse larger manifests; nobody needs more. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function pullScope(repo: RepositoryRef): string {
  return `repository:${repo.repository}:pull`;
}
function pushScope(repo: RepositoryRef): string {
  return `repository:${repo.repository}:pull,push`;
}

function isAbort(error: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true || (error instanceof Error && error.name === 'AbortError');
}

/** Drops a response body we do not read, so the connection goes back to the pool. */
async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => undefined);
}

/** The registry's own explanation (`{"errors":[{"code","message"}]}`), or the HTTP status. */
async function registryErrorText(response: Response): Promise<string> {
  let text = '';
  try {
    text = await response.text();
  } catch {
    // body unreadable: the status says enough
  }
  try {
    const parsed = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> };
    const first = parsed.errors?.[0];
    if (first !== undefined) return `${first.code ?? 'error'}: ${first.message ?? ''}`.trim();
  } catch {
    // not JSON
  }
  return `HTTP ${response.status}${text === '' ? '' : `: ${text.slice(0, 200).trim()}`}`;
}

function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

interface RegistryAuthState {
  /** The last bearer challenge seen: realm and service, so later requests get tokens before a 401. */
  bearer?: Challenge;
  /** The registry asked for basic auth: send credentials up front. */
  basic?: boolean;
  tokens: Map<string, { token: string; expiresAt: number }>;
}

/**
 * What the source sent was not the blob asked for: its stream failed mid-way, or its bytes hash to
 * another digest. Nothing was committed; reading the source again may well succeed (a proxy or a
 * registry that cut the response short), so callers that can re-read retry it.
 */
export class BlobContentError extends DomainError {
  constructor(message: string, cause?: unknown) {
    super('UNAVAILABLE', message, cause === undefined ? { retryable: true } : { retryable: true, cause });
    this.name = 'BlobContentError';
  }
}

export class RegistryClient {
  readonly #insecure: ReadonlySet<string>;
  readonly #credentials: CredentialsLookup;
  readonly #chunkSize: number;
  readonly #attempts: number;
  readonly #log: Logger | undefined;
  readonly #fetch: typeof fetch;
  readonly #userAgent: string;
  readonly #auth = new Map<string, RegistryAuthState>();

  constructor(options: RegistryClientOptions = {}) {
    this.#insecure = new Set(options.insecureHosts ?? []);
    this.#credentials = options.credentials ?? (() => undefined);
    this.#chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!(this.#chunkSize >= 1)) throw new Error('chunkSize must be at least 1 byte');
    this.#attempts = Math.max(1, options.attempts ?? 3);
    this.#log = options.log;
    this.#fetch = options.fetch ?? fetch;
    this.#userAgent = options.userAgent ?? 'stageline-build';
  }

  baseUrl(registry: string): string {
    return registryBaseUrl(registry, this.#insecure);
  }

  // --- manifests ------------------------------------------------------------------------------

  /** The digest and type a tag or digest resolves to, or undefined when the registry does not have it. */
  async headManifest(ref: ImageReference, signal?: AbortSignal): Promise<ManifestHead | undefined> {
    const response = await this.#request({
      method: 'HEAD',
      registry: ref.registry,
      url: this.#manifestPath(ref, manifestReference(ref)),
      scopes: [pullScope(ref)],
      headers: { accept: MANIFEST_ACCEPT },
      signal,
    });
    if (response.status === 404) {
      await discard(response);
      return undefined;
    }
    if (!response.ok) throw await this.#fail(response, `checking ${formatReference(ref)}`);
    await discard(response);
    const digest = response.headers.get('docker-content-digest');
    // A registry that does not say the digest on HEAD: read the manifest and hash it.
    if (digest === null) return this.getManifest(ref, signal).catch((e: unknown) => notFoundAsUndefined(e));
    return {
      digest,
      mediaType: (response.headers.get('content-type') ?? '').split(';')[0]!.trim(),
      size: Number(response.headers.get('content-length') ?? '0'),
    };
  }

  /** The manifest a tag or digest names, its digest verified. NOT_FOUND when the registry lacks it. */
  async getManifest(ref: ImageReference, signal?: AbortSignal): Promise<Manifest> {
    const reference = manifestReference(ref);
    const response = await this.#request({
      method: 'GET',
      registry: ref.registry,
      url: this.#manifestPath(ref, reference),
      scopes: [pullScope(ref)],
      headers: { accept: MANIFEST_ACCEPT },
      signal,
    });
    if (response.status === 404) {
      await discard(response);
      throw imageNotFound(ref);
    }
    if (!response.ok) throw await this.#fail(response, `reading the manifest of ${formatReference(ref)}`);
    const declared = Number(response.headers.get('content-length') ?? '0');
    if (declared > MAX_MANIFEST_BYTES) {
      await discard(response);
      throw new DomainError('FAILED_PRECONDITION', `manifest of ${formatReference(ref)} is over 4 MiB`);
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    const digest = sha256Digest(bytes);
    const expected = ref.digest ?? response.headers.get('docker-content-digest');
    // Only sha256 can be checked here; other algorithms are taken on the registry's word.
    if (expected?.startsWith('sha256:') && expected !== digest) {
      throw new DomainError(
        'FAILED_PRECONDITION',
        `manifest of ${formatReference(ref)} does not match its digest (expected ${expected}, got ${digest})`,
      );
    }
    const contentType = response.headers.get('content-type') ?? '';
    const parsed = parseManifest(bytes, contentType);
    return { digest: expected ?? digest, mediaType: parsed.mediaType, size: bytes.length, bytes, parsed };
  }

  /** Stores a manifest under a tag or its digest; returns the digest the registry computed. */
  async putManifest(
    repo: RepositoryRef,
    reference: string,
    manifest: { bytes: Uint8Array; mediaType: string },
    signal?: AbortSignal,
  ): Promise<string> {
    const response = await this.#request({
      method: 'PUT',
      registry: repo.registry,
      url: this.#manifestPath(repo, reference),
      scopes: [pushScope(repo)],
      headers: { 'content-type': manifest.mediaType },
      body: manifest.bytes,
      signal,
    });
    if (response.status !== 201 && !response.ok) {
      throw await this.#fail(response, `storing a manifest in ${repo.registry}/${repo.repository}:${reference}`);
    }
    await discard(response);
    return response.headers.get('docker-content-digest') ?? sha256Digest(manifest.bytes);
  }

  // --- blobs ----------------------------------------------------------------------------------

  async blobExists(repo: RepositoryRef, digest: string, signal?: AbortSignal): Promise<boolean> {
    const response = await this.#request({
      method: 'HEAD',
      registry: repo.registry,
      url: `/v2/${repo.repository}/blobs/${digest}`,
      scopes: [pullScope(repo)],
      signal,
    });
    await discard(response);
    if (response.status === 404) return false;
    if (response.ok) return true;
    throw await this.#fail(response, `checking blob ${digest} in ${repo.registry}/${repo.repository}`);
  }

  /** A blob's content as a stream (redirects to storage are followed). */
  async getBlob(
    repo: RepositoryRef,
    digest: string,
    signal?: AbortSignal,
  ): Promise<{ stream: ReadableStream<Uint8Array>; size: number | undefined }> {
    const response = await this.#request({
      method: 'GET',
      registry: repo.registry,
      url: `/v2/${repo.repository}/blobs/${digest}`,
      scopes: [pullScope(repo)],
      signal,
    });
    if (response.status === 404) {
      await discard(response);
      throw new DomainError('NOT_FOUND', `blob ${digest} not found in ${repo.registry}/${repo.repository}`);
    }
    if (!response.ok || response.body === null) {
      throw await this.#fail(response, `reading blob ${digest} from ${repo.registry}/${repo.repository}`);
    }
    const length = response.headers.get('content-length');
    return { stream: response.body, size: length === null ? undefined : Number(length) };
  }

  /**
   * Asks the registry to link a blob another repository of it already has (no bytes move). 201: mounted.
   * 202: the registry cannot (or will not) and opened an upload session instead, returned for the upload.
   */
  async mountBlob(
    to: RepositoryRef,
    digest: string,
    fromRepository: string,
    signal?: AbortSignal,
  ): Promise<MountResult> {
    const query = new URLSearchParams({ mount: digest, from: fromRepository });
    const response = await this.#request({
      method: 'POST',
      registry: to.registry,
      url: `/v2/${to.repository}/blobs/uploads/?${query}`,
      scopes: [pushScope(to), `repository:${fromRepository}:pull`],
      signal,
    });
    await discard(response);
    if (response.status === 201) return { mounted: true };
    if (response.status === 202) return { mounted: false, uploadUrl: this.#location(response, to.registry) };
    throw await this.#fail(response, `mounting blob ${digest} into ${to.registry}/${to.repository}`);
  }

  /**
   * Chunked upload (POST → PATCH per chunk → PUT ?digest=) of a stream whose digest is known in advance.
   * At most one chunk is held in memory; the content is hashed on the way and a mismatch aborts the upload
   * before the registry commits anything.
   */
  async uploadBlob(
    repo: RepositoryRef,
    digest: string,
    content: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | Uint8Array,
    options: UploadOptions = {},
  ): Promise<void> {
    try {
      await this.#upload(repo, digest, content, options);
    } catch (error) {
      // A source stream never read (the upload failed before it started) would hold its connection open.
      if (content instanceof ReadableStream && !content.locked) await content.cancel().catch(() => undefined);
      throw error;
    }
  }

  async #upload(
    repo: RepositoryRef,
    digest: string,
    content: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | Uint8Array,
    options: UploadOptions,
  ): Promise<void> {
    const { signal } = options;
    const scopes = [pushScope(repo)];
    let url: string;
    let chunkSize = this.#chunkSize;
    if (options.uploadUrl !== undefined) {
      url = options.uploadUrl;
    } else {
      const started = await this.#request({
        method: 'POST',
        registry: repo.registry,
        url: `/v2/${repo.repository}/blobs/uploads/`,
        scopes,
        signal,
      });
      await discard(started);
      if (started.status !== 202) {
        throw await this.#fail(started, `starting an upload to ${repo.registry}/${repo.repository}`);
      }
      url = this.#location(started, repo.registry);
      const minimum = Number(started.headers.get('oci-chunk-min-length') ?? '0');
      if (minimum > chunkSize) chunkSize = minimum;
    }

    const hash = createHash(digest.startsWith('sha512:') ? 'sha512' : 'sha256');
    let sent = 0;
    const buffer = new Uint8Array(chunkSize);
    let filled = 0;
    const flush = async (): Promise<void> => {
      if (filled === 0) return;
      const chunk = buffer.subarray(0, filled);
      const response = await this.#request({
        method: 'PATCH',
        registry: repo.registry,
        url,
        scopes,
        headers: {
          'content-type': 'application/octet-stream',
          'content-range': `${sent}-${sent + filled - 1}`,
        },
        body: chunk,
        signal,
      });
      await discard(response);
      if (response.status !== 202) {
        throw await this.#fail(response, `uploading blob ${digest} to ${repo.registry}/${repo.repository}`);
      }
      url = this.#location(response, repo.registry);
      sent += filled;
      filled = 0;
      options.onChunk?.(sent);
    };

    let received = 0;
    try {
      for await (const piece of sourceOf(content, digest)) {
        hash.update(piece);
        received += piece.length;
        let offset = 0;
        while (offset < piece.length) {
          const n = Math.min(chunkSize - filled, piece.length - offset);
          buffer.set(piece.subarray(offset, offset + n), filled);
          filled += n;
          offset += n;
          if (filled === chunkSize) await flush();
        }
      }
      await flush();
      const actual = `${digest.slice(0, digest.indexOf(':'))}:${hash.digest('hex')}`;
      if (actual !== digest) {
        throw new BlobContentError(
          `blob content does not match its digest ${digest} (got ${received} bytes hashing to ${actual}): the source sent something else`,
        );
      }
      const commit = new URL(url);
      commit.searchParams.set('digest', digest);
      const response = await this.#request({
        method: 'PUT',
        registry: repo.registry,
        url: commit.toString(),
        scopes,
        headers: { 'content-type': 'application/octet-stream' },
        body: new Uint8Array(0),
        signal,
      });
      await discard(response);
      if (response.status !== 201 && !response.ok) {
        throw await this.#fail(response, `committing blob ${digest} to ${repo.registry}/${repo.repository}`);
      }
    } catch (error) {
      // Free the registry's session; never with the (maybe aborted) signal, and never masking the cause.
      await this.#request({ method: 'DELETE', registry: repo.registry, url, scopes })
        .then(discard)
        .catch(() => undefined);
      throw error;
    }
  }

  /** Uploads bytes unless the repository already has them; returns their digest. */
  async pushBlob(repo: RepositoryRef, bytes: Uint8Array, signal?: AbortSignal): Promise<string> {
    const digest = sha256Digest(bytes);
    if (!(await this.blobExists(repo, digest, signal))) await this.uploadBlob(repo, digest, bytes, { signal });
    return digest;
  }

  /** Deletes a manifest by digest (the mirror allows deletes). */
  async deleteManifest(repo: RepositoryRef, digest: string, signal?: AbortSignal): Promise<void> {
    const response = await this.#request({
      method: 'DELETE',
      registry: repo.registry,
      url: this.#manifestPath(repo, digest),
      scopes: [`repository:${repo.repository}:delete`, pushScope(repo)],
      signal,
    });
    await discard(response);
    if (response.status !== 202 && response.status !== 404 && !response.ok) {
      throw await this.#fail(response, `deleting ${repo.registry}/${repo.repository}@${digest}`);
    }
  }

  // --- transport ------------------------------------------------------------------------------

  #manifestPath(repo: RepositoryRef, reference: string): string {
    return `/v2/${repo.repository}/manifests/${reference}`;
  }

  #location(response: Response, registry: string): string {
    const location = response.headers.get('location');
    if (location === null) {
      throw new DomainError('INTERNAL', `registry ${registry} answered an upload without a Location header`);
    }
    return new URL(location, this.baseUrl(registry)).toString();
  }

  #state(registry: string): RegistryAuthState {
    let state = this.#auth.get(registry);
    if (state === undefined) {
      state = { tokens: new Map() };
      this.#auth.set(registry, state);
    }
    return state;
  }

  async #fail(response: Response, doing: string): Promise<DomainError> {
    const detail = await registryErrorText(response);
    const status = response.status;
    if (status === 401 || status === 403) {
      return new DomainError('FAILED_PRECONDITION', `${doing}: access denied by the registry (${detail})`);
    }
    if (status >= 500 || status === 429) {
      return new DomainError('UNAVAILABLE', `${doing}: the registry failed (${detail})`);
    }
    if (status === 404) return new DomainError('NOT_FOUND', `${doing}: ${detail}`);
    return new DomainError('FAILED_PRECONDITION', `${doing}: ${detail}`);
  }

  /** A bearer token for these scopes from the realm the registry named (cached until it expires). */
  async #token(
    registry: string,
    challenge: Challenge,
    scopes: readonly string[],
    signal?: AbortSignal,
  ): Promise<string> {
    const state = this.#state(registry);
    const merged = mergeScopes(scopes);
    const key = `${challenge.params.realm ?? ''} ${challenge.params.service ?? ''} ${merged.join(' ')}`;
    const cached = state.tokens.get(key);
    if (cached !== undefined && cached.expiresAt > Date.now()) return cached.token;
    const realm = challenge.params.realm;
    if (realm === undefined || realm === '') {
      throw new DomainError('FAILED_PRECONDITION', `registry ${registry} asked for a bearer token without a realm`);
    }
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new DomainError('FAILED_PRECONDITION', `registry ${registry} named a token realm that is not a URL`);
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && this.baseUrl(registry).startsWith('http:'))) {
      // Credentials go to the realm: never over plain HTTP unless the registry itself is plain HTTP.
      throw new DomainError('FAILED_PRECONDITION', `registry ${registry} named a token realm that is not https`);
    }
    if (challenge.params.service !== undefined) url.searchParams.set('service', challenge.params.service);
    for (const scope of merged) url.searchParams.append('scope', scope);
    const credentials = this.#credentials(registry);
    const headers: Record<string, string> = { 'user-agent': this.#userAgent, accept: 'application/json' };
    if (credentials !== undefined) headers.authorization = basicAuthorization(credentials);
    let response: Response;
    try {
      response = await this.#fetch(url, { headers, ...(signal === undefined ? {} : { signal }) });
    } catch (error) {
      if (isAbort(error, signal)) throw signal?.reason ?? error;
      throw new DomainError(
        'UNAVAILABLE',
        `token service of ${registry} is unreachable (${describeNetworkError(error)})`,
        { cause: error },
      );
    }
    if (!response.ok) {
      await discard(response);
      // The status only: a token service's error body may echo what it was sent.
      const code = response.status >= 500 ? 'UNAVAILABLE' : 'FAILED_PRECONDITION';
      throw new DomainError(
        code,
        `token service of ${registry} refused ${credentials === undefined ? 'anonymous' : 'the configured'} access (HTTP ${response.status})`,
      );
    }
    const token = readTokenResponse(await response.json().catch(() => undefined), Date.now());
    if (token === undefined) {
      throw new DomainError('FAILED_PRECONDITION', `token service of ${registry} answered without a token`);
    }
    state.tokens.set(key, token);
    return token.token;
  }

  async #authorization(spec: RequestSpec): Promise<string | undefined> {
    const state = this.#state(spec.registry);
    if (state.bearer !== undefined)
      return `Bearer ${await this.#token(spec.registry, state.bearer, spec.scopes, spec.signal)}`;
    if (state.basic) {
      const credentials = this.#credentials(spec.registry);
      if (credentials !== undefined) return basicAuthorization(credentials);
    }
    return undefined;
  }

  /**
   * One request with auth: credentials the registry asked for before are sent up front; a 401 with a
   * challenge is answered once (token fetched, or basic credentials) and the request repeated. Idempotent
   * requests are retried on network errors and 429/502/503/504.
   */
  async #request(spec: RequestSpec): Promise<Response> {
    const url = new URL(spec.url, this.baseUrl(spec.registry));
    const idempotent = spec.method === 'GET' || spec.method === 'HEAD';
    let answeredChallenge = false;
    for (let attempt = 1; ; attempt++) {
      const authorization = await this.#authorization(spec);
      const headers: Record<string, string> = { 'user-agent': this.#userAgent, ...spec.headers };
      if (authorization !== undefined) headers.authorization = authorization;
      let response: Response;
      try {
        response = await this.#fetch(url, {
          method: spec.method,
          headers,
          ...(spec.body === undefined ? {} : { body: spec.body }),
          ...(spec.signal === undefined ? {} : { signal: spec.signal }),
        });
      } catch (error) {
        if (isAbort(error, spec.signal)) throw spec.signal?.reason ?? error;
        if (idempotent && attempt < this.#attempts) {
          await sleep(200 * 4 ** (attempt - 1), spec.signal);
          continue;
        }
        throw new DomainError(
          'UNAVAILABLE',
          `registry ${spec.registry} is unreachable (${describeNetworkError(error)})`,
          { cause: error },
        );
      }
      this.#log?.debug(
        { method: spec.method, registry: spec.registry, path: url.pathname, status: response.status },
        'registry request',
      );
      if (response.status === 401 && !answeredChallenge) {
        const challenge = parseChallenge(response.headers.get('www-authenticate'));
        const state = this.#state(spec.registry);
        if (challenge?.scheme === 'bearer') {
          await discard(response);
          answeredChallenge = true;
          state.bearer = challenge;
          // A token we sent and was refused (expired, revoked): never offer it again.
          state.tokens.clear();
          // The scope the registry asked for plus ours (a mount needs the source repository too); the
          // next turn fetches a token for them.
          spec = { ...spec, scopes: [...spec.scopes, ...(challenge.params.scope ? [challenge.params.scope] : [])] };
          attempt--;
          continue;
        }
        if (challenge?.scheme === 'basic' && this.#credentials(spec.registry) !== undefined && !state.basic) {
          await discard(response);
          answeredChallenge = true;
          state.basic = true;
          attempt--;
          continue;
        }
      }
      if (idempotent && RETRYABLE_STATUS.has(response.status) && attempt < this.#attempts) {
        await discard(response);
        await sleep(200 * 4 ** (attempt - 1), spec.signal);
        continue;
      }
      return response;
    }
  }
}

function manifestReference(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

export function imageNotFound(ref: ImageReference): DomainError {
  return new DomainError('NOT_FOUND', `image ${formatReference(ref)} not found in its registry`);
}

function notFoundAsUndefined(error: unknown): undefined {
  if (error instanceof DomainError && error.code === 'NOT_FOUND') return undefined;
  throw error;
}

/** The content to upload; a failure of the source stream itself becomes a BlobContentError. */
async function* sourceOf(
  content: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | Uint8Array,
  digest: string,
): AsyncIterable<Uint8Array> {
  if (content instanceof Uint8Array) {
    yield content;
    return;
  }
  const iterator = (content as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Uint8Array>;
    try {
      next = await iterator.next();
    } catch (error) {
      if (error instanceof DomainError || (error instanceof Error && error.name === 'AbortError')) throw error;
      throw new BlobContentError(
        `reading blob ${digest} from its source failed (${error instanceof Error ? error.message : String(error)})`,
        error,
      );
    }
    if (next.done === true) return;
    yield next.value;
  }
}
