// Manifest media types the mirror understands, and what a manifest refers to (its children and blobs).
import { DomainError } from '@stageline/errors';

export const MEDIA_TYPES = {
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  DOCKER_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_LAYER_GZIP: 'application/vnd.oci.image.layer.v1.tar+gzip',
  DOCKER_CONFIG: 'application/vnd.docker.container.image.v1+json',
  DOCKER_LAYER_GZIP: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** Sent with every manifest request: without it a registry may convert, or answer with schema 1. */
export const MANIFEST_ACCEPT = [
  MEDIA_TYPES.OCI_INDEX,
  MEDIA_TYPES.OCI_MANIFEST,
  MEDIA_TYPES.DOCKER_LIST,
  MEDIA_TYPES.DOCKER_MANIFEST,
].join(', ');

const INDEX_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.OCI_INDEX, MEDIA_TYPES.DOCKER_LIST]);
const IMAGE_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.OCI_MANIFEST, MEDIA_TYPES.DOCKER_MANIFEST]);
// Windows base layers: the registry never holds them (they carry `urls`), so they are not copied.
const FOREIGN_LAYER_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
]);

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  platform?: { architecture: string; os: string; variant?: string };
  annotations?: Record<string, string>;
}

export type ManifestKind = 'index' | 'image';

export interface ParsedManifest {
  kind: ManifestKind;
  mediaType: string;
  /** index: the manifests it lists. */
  manifests: Descriptor[];
  /** image: config first, then the layers that live in the registry. */
  blobs: Descriptor[];
}

export function isManifestMediaType(mediaType: string): boolean {
  return INDEX_TYPES.has(mediaType) || IMAGE_TYPES.has(mediaType);
}

function descriptor(value: unknown, where: string): Descriptor {
  const d = value as Partial<Descriptor> | null;
  if (
    d === null ||
    typeof d !== 'object' ||
    typeof d.digest !== 'string' ||
    typeof d.size !== 'number' ||
    typeof d.mediaType !== 'string'
  ) {
    throw new DomainError('FAILED_PRECONDITION', `manifest has a malformed descriptor in ${where}`);
  }
  return d as Descriptor;
}

/**
 * Reads a manifest's references. `mediaType` is the Content-Type the registry sent; the body's own
 * `mediaType` wins when present (OCI makes it optional, Docker always sets it).
 */
export function parseManifest(bytes: Uint8Array, contentType: string): ParsedManifest {
  let body: { mediaType?: unknown; schemaVersion?: unknown; manifests?: unknown; config?: unknown; layers?: unknown };
  try {
    body = JSON.parse(new TextDecoder().decode(bytes)) as typeof body;
  } catch {
    throw new DomainError('FAILED_PRECONDITION', 'the registry returned a manifest that is not JSON');
  }
  const declared = typeof body.mediaType === 'string' ? body.mediaType : undefined;
  const fromHeader = contentType.split(';')[0]?.trim() ?? '';
  let mediaType = declared ?? fromHeader;
  // An OCI body without mediaType: tell index from image by shape.
  if (!isManifestMediaType(mediaType)) {
    if (Array.isArray(body.manifests)) mediaType = MEDIA_TYPES.OCI_INDEX;
    else if (body.config !== undefined) mediaType = MEDIA_TYPES.OCI_MANIFEST;
  }
  if (body.schemaVersion === 1 || !isManifestMediaType(mediaType)) {
    throw new DomainError(
      'FAILED_PRECONDITION',
      `unsupported manifest type ${JSON.stringify(declared ?? fromHeader)} (schema 1 and unknown types are not mirrored)`,
    );
  }
  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(body.manifests)) throw new DomainError('FAILED_PRECONDITION', 'index without "manifests"');
    return {
      kind: 'index',
      mediaType,
      manifests: body.manifests.map((m, i) => descriptor(m, `manifests[${i}]`)),
      blobs: [],
    };
  }
  const config = descriptor(body.config, 'config');
  const layers = Array.isArray(body.layers) ? body.layers.map((l, i) => descriptor(l, `layers[${i}]`)) : [];
  return {
    kind: 'image',
    mediaType,
    manifests: [],
    blobs: [config, ...layers.filter((l) => !FOREIGN_LAYER_TYPES.has(l.mediaType) && l.urls === undefined)],
  };
}

/** "linux/amd64/v8" style label of a platform, for progress lines. */
export function platformLabel(d: Descriptor): string {
  const p = d.platform;
  if (p === undefined) return d.digest.slice(0, 19);
  return [p.os, p.architecture, p.variant].filter((x) => x !== undefined && x !== '').join('/');
}
