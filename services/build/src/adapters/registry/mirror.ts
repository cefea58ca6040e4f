// Copies an image between repositories (of one registry or two) through the distribution API: a
// single manifest or an index with every manifest it lists, blobs checked first, mounted when a
// repository of the destination registry has them, streamed across registries otherwise.
import { DomainError } from '@stageline/errors';
import {
  BlobContentError,
  imageNotFound,
  type ManifestHead,
  type RegistryClient,
  type RepositoryRef,
} from './client.ts';
import { type Descriptor, isManifestMediaType, platformLabel } from './manifest.ts';
import { formatReference, type ImageReference } from './reference.ts';

export type BlobAction = 'exists' | 'mounted' | 'copied';

/** Reads of one blob from the source before a copy gives up on content that does not verify. */
const BLOB_READ_ATTEMPTS = 3;

export type MirrorProgress =
  | { type: 'resolved'; source: string; digest: string; mediaType: string }
  | { type: 'cache-hit'; destination: string; digest: string }
  | { type: 'manifest'; digest: string; mediaType: string; platform?: string | undefined; action: 'exists' | 'copied' }
  | { type: 'blob'; digest: string; size: number; action: BlobAction; from?: string | undefined }
  | { type: 'bytes'; digest: string; sent: number; size: number }
  | { type: 'retry'; digest: string; attempt: number; reason: string };

export interface MirrorOptions {
  signal?: AbortSignal | undefined;
  /** Copy even when the destination tag already resolves to the source digest (blobs present are still skipped). */
  force?: boolean | undefined;
  /**
   * Repositories of the destination registry that may hold the same blobs (e.g. earlier mirrors of this
   * image): blobs found there are mounted, not copied.
   */
  mountFrom?: readonly string[] | undefined;
  onProgress?: ((event: MirrorProgress) => void) | undefined;
  /** Blobs copied at once (default 4). */
  concurrency?: number | undefined;
}

export interface MirrorResult {
  /** Digest of the manifest (or index) now under the destination tag: the same as the source's. */
  digest: string;
  mediaType: string;
  /** The destination already had it: nothing was copied. */
  cacheHit: boolean;
  source: { reference: string; digest: string };
  destination: string;
  manifests: { copied: number; existing: number };
  blobs: Record<BlobAction, number>;
  bytesCopied: number;
}

/**
 * Mirrors `src` (tag or digest; no tag means `latest`) into `dst` (a tag is required). The source is
 * read by digest once resolved, so a tag moved mid-copy cannot mix two images. Returns the destination
 * digest. NOT_FOUND ("image … not found in its registry") when the source does not exist.
 */
export async function mirrorImage(
  client: RegistryClient,
  src: ImageReference,
  dst: ImageReference,
  options: MirrorOptions = {},
): Promise<MirrorResult> {
  const { signal, onProgress } = options;
  if (dst.tag === undefined || dst.digest !== undefined) {
    throw new DomainError('INVALID_ARGUMENT', `destination ${formatReference(dst)} must name a tag and no digest`);
  }
  const source: ImageReference = src.tag === undefined && src.digest === undefined ? { ...src, tag: 'latest' } : src;
  const sourceName = formatReference(source);
  const destination = formatReference(dst);

  let head: ManifestHead | undefined;
  if (source.digest === undefined) {
    head = await client.headManifest(source, signal);
    if (head === undefined) throw imageNotFound(source);
  }
  const sourceDigest = source.digest ?? head!.digest;
  if (!options.force) {
    const existing = await client.headManifest(dst, signal);
    if (existing?.digest === sourceDigest) {
      onProgress?.({ type: 'cache-hit', destination, digest: sourceDigest });
      return {
        digest: sourceDigest,
        mediaType: existing.mediaType,
        cacheHit: true,
        source: { reference: sourceName, digest: sourceDigest },
        destination,
        manifests: { copied: 0, existing: 1 },
        blobs: { exists: 0, mounted: 0, copied: 0 },
        bytesCopied: 0,
      };
    }
  }

  const root = await client.getManifest({ ...source, digest: sourceDigest }, signal);
  onProgress?.({ type: 'resolved', source: sourceName, digest: root.digest, mediaType: root.mediaType });
  const copier = new TreeCopier(client, source, dst, options);
  await copier.copyChildrenOf(root.parsed, copier.signal);
  await client.putManifest(dst, dst.tag, root, signal);
  onProgress?.({ type: 'manifest', digest: root.digest, mediaType: root.mediaType, action: 'copied' });
  return {
    digest: root.digest,
    mediaType: root.mediaType,
    cacheHit: false,
    source: { reference: sourceName, digest: root.digest },
    destination,
    manifests: { copied: copier.manifestsCopied + 1, existing: copier.manifestsExisting },
    blobs: copier.blobs,
    bytesCopied: copier.bytesCopied,
  };
}

class TreeCopier {
  manifestsCopied = 0;
  manifestsExisting = 0;
  readonly blobs: Record<BlobAction, number> = { exists: 0, mounted: 0, copied: 0 };
  bytesCopied = 0;
  /** One copy per digest, however many platforms share it. */
  readonly #blobCopies = new Map<string, Promise<void>>();
  readonly #manifestCopies = new Map<string, Promise<void>>();
  readonly #client: RegistryClient;
  readonly #src: RepositoryRef;
  readonly #dst: RepositoryRef;
  readonly #options: MirrorOptions;
  readonly #limit: <T>(work: () => Promise<T>) => Promise<T>;
  readonly #internal = new AbortController();
  readonly #stop = (reason: unknown): void => this.#internal.abort(reason);
  /** Aborted by the caller's signal or by the first failed copy. */
  readonly signal: AbortSignal;

  constructor(client: RegistryClient, src: RepositoryRef, dst: RepositoryRef, options: MirrorOptions) {
    this.signal =
      options.signal === undefined ? this.#internal.signal : AbortSignal.any([options.signal, this.#internal.signal]);
    this.#client = client;
    this.#src = src;
    this.#dst = dst;
    this.#options = options;
    this.#limit = limiter(options.concurrency ?? 4);
  }

  async copyChildrenOf(
    manifest: { kind: 'index' | 'image'; manifests: Descriptor[]; blobs: Descriptor[] },
    signal: AbortSignal | undefined,
  ): Promise<void> {
    if (manifest.kind === 'index') {
      await settleAll(
        manifest.manifests.map((child) => this.#copyManifest(child, signal)),
        this.#stop,
      );
    } else {
      await settleAll(
        manifest.blobs.map((blob) => this.#copyBlob(blob, signal)),
        this.#stop,
      );
    }
  }

  #copyManifest(child: Descriptor, signal: AbortSignal | undefined): Promise<void> {
    let pending = this.#manifestCopies.get(child.digest);
    if (pending === undefined) {
      pending = this.#copyManifestOnce(child, signal);
      this.#manifestCopies.set(child.digest, pending);
    }
    return pending;
  }

  async #copyManifestOnce(child: Descriptor, signal: AbortSignal | undefined): Promise<void> {
    if (!isManifestMediaType(child.mediaType)) {
      throw new DomainError(
        'FAILED_PRECONDITION',
        `index lists ${child.digest} of unsupported type ${JSON.stringify(child.mediaType)}`,
      );
    }
    const platform = platformLabel(child);
    // A registry stores a manifest only once everything it references is there: if the destination
    // has it, its whole subtree is there too.
    const present = await this.#client.headManifest({ ...this.#dst, digest: child.digest }, signal);
    if (present !== undefined) {
      this.manifestsExisting++;
      this.#options.onProgress?.({
        type: 'manifest',
        digest: child.digest,
        mediaType: child.mediaType,
        platform,
        action: 'exists',
      });
      return;
    }
    const manifest = await this.#client.getManifest({ ...this.#src, digest: child.digest }, signal);
    await this.copyChildrenOf(manifest.parsed, signal);
    await this.#client.putManifest(this.#dst, child.digest, manifest, signal);
    this.manifestsCopied++;
    this.#options.onProgress?.({
      type: 'manifest',
      digest: child.digest,
      mediaType: manifest.mediaType,
      platform,
      action: 'copied',
    });
  }

  #copyBlob(blob: Descriptor, signal: AbortSignal | undefined): Promise<void> {
    let pending = this.#blobCopies.get(blob.digest);
    if (pending === undefined) {
      pending = this.#limit(() => this.#copyBlobOnce(blob, signal));
      this.#blobCopies.set(blob.digest, pending);
    }
    return pending;
  }

  async #copyBlobOnce(blob: Descriptor, signal: AbortSignal | undefined): Promise<void> {
    const client = this.#client;
    const dst = this.#dst;
    const report = (action: BlobAction, from?: string): void => {
      this.blobs[action]++;
      this.#options.onProgress?.({ type: 'blob', digest: blob.digest, size: blob.size, action, from });
    };
    if (await client.blobExists(dst, blob.digest, signal)) {
      report('exists');
      return;
    }
    // Mount candidates: the source itself when it lives in the same registry, then repositories the
    // caller knows to hold this image, if they have the blob.
    const candidates: string[] = [];
    if (this.#src.registry === dst.registry && this.#src.repository !== dst.repository) {
      candidates.push(this.#src.repository);
    }
    for (const repository of this.#options.mountFrom ?? []) {
      if (repository === dst.repository || candidates.includes(repository)) continue;
      if (await client.blobExists({ registry: dst.registry, repository }, blob.digest, signal)) {
        candidates.push(repository);
      }
    }
    let uploadUrl: string | undefined;
    for (const from of candidates) {
      const mount = await client.mountBlob(dst, blob.digest, from, signal);
      if (mount.mounted) {
        report('mounted', from);
        return;
      }
      // 202: no mount, but an upload session is open: use it for the copy below.
      uploadUrl = mount.uploadUrl;
      break;
    }
    for (let attempt = 1; ; attempt++) {
      const { stream } = await client.getBlob(this.#src, blob.digest, signal);
      try {
        await client.uploadBlob(dst, blob.digest, stream, {
          signal,
          uploadUrl,
          onChunk: (sent) => this.#options.onProgress?.({ type: 'bytes', digest: blob.digest, sent, size: blob.size }),
        });
        break;
      } catch (error) {
        // The source cut its answer short or sent other bytes: nothing was committed, read it again.
        if (!(error instanceof BlobContentError) || attempt >= BLOB_READ_ATTEMPTS || signal?.aborted === true) {
          throw error;
        }
        this.#options.onProgress?.({ type: 'retry', digest: blob.digest, attempt, reason: error.message });
        uploadUrl = undefined; // the failed upload's session was cancelled
      }
    }
    this.bytesCopied += blob.size;
    report('copied');
  }
}

/**
 * Waits for every promise, then throws the first failure. The first failure also calls `stop`, so
 * sibling copies end early instead of finishing for nothing; none is left running unobserved.
 */
async function settleAll(promises: Promise<void>[], stop: (reason: unknown) => void): Promise<void> {
  let first: { reason: unknown } | undefined;
  await Promise.all(
    promises.map((p) =>
      p.catch((reason: unknown) => {
        if (first === undefined) {
          first = { reason };
          stop(reason);
        }
      }),
    ),
  );
  if (first !== undefined) throw first.reason;
}

/** At most `max` of the functions it is given run at once; the rest wait in order. */
export function limiter(max: number): <T>(work: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async <T>(work: () => Promise<T>): Promise<T> => {
    // A finishing task hands its slot straight to the next waiter, so the count never overshoots.
    if (running >= max) await new Promise<void>((resolve) => waiting.push(resolve));
    else running++;
    try {
      return await work();
    } finally {
      const next = waiting.shift();
      if (next === undefined) running--;
      else next();
    }
  };
}
