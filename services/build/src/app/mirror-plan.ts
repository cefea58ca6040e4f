// What a mirror job copies where (services/build/README.md): the source image a service runs, and its name
// in the mirror — per service (`<project>/<env>/<service>:<tag>`, the default) or shared by source
// (`<project>/shared/<source registry>/<source repository>:<tag>`).
import { invalidArgument } from '@stageline/errors';
import { type bus, control } from '@stageline/proto';
import { checkDigest, type ImageReference, parseReference } from '../adapters/registry/reference.ts';
import { slug } from '../domain/cache-key.ts';

const Engine = control.DatabaseEngine;

/** Official images of each engine: the default when a CONTAINER-mode database names none. */
const OFFICIAL_DATABASE_IMAGES: Readonly<Record<number, string>> = {
  [Engine.DATABASE_ENGINE_POSTGRESQL]: 'docker.io/library/postgres',
  [Engine.DATABASE_ENGINE_MYSQL]: 'docker.io/library/mysql',
  [Engine.DATABASE_ENGINE_REDIS]: 'docker.io/library/redis',
  [Engine.DATABASE_ENGINE_MONGODB]: 'docker.io/library/mongo',
};

export interface MirrorPlan {
  source: ImageReference;
  destination: ImageReference;
}

/**
 * The job's `version` (resolved by the planner): `tag:<t>` or a bare tag, or a digest
 * (`sha256:…`, `digest:sha256:…`) to pin. Empty: the service's own tag.
 */
function versionPin(version: string): { tag?: string; digest?: string } {
  const v = version.trim();
  if (v === '') return {};
  if (v.startsWith('tag:')) return { tag: v.slice(4) };
  if (v.startsWith('digest:')) return { digest: v.slice(7) };
  if (/^sha(256|512):/.test(v)) return { digest: v };
  return { tag: v };
}

function withVersion(image: string, fallbackTag: string, version: string, field: string): ImageReference {
  const base = parseReference(image, field);
  const pin = versionPin(version);
  const tag = base.tag ?? (fallbackTag === '' ? undefined : fallbackTag);
  if (pin.digest !== undefined) {
    const problem = checkDigest(pin.digest);
    if (problem !== undefined) throw invalidArgument('version', problem);
    // The tag stays for naming in the mirror; the digest decides what is copied.
    return { ...base, tag, digest: pin.digest };
  }
  if (pin.tag !== undefined) {
    const pinned = parseReference(`${base.registry}/${base.repository}:${pin.tag}`, 'version');
    return { ...base, tag: pinned.tag, digest: undefined };
  }
  if (base.digest !== undefined) return base;
  return { ...base, tag: tag ?? 'latest' };
}

/** The image a MIRROR job copies. INVALID_ARGUMENT naming the field when the service has none. */
export function sourceImage(service: control.Service, version: string): ImageReference {
  const source = service.source;
  switch (source?.$case) {
    case 'container':
      return withVersion(source.value.image, source.value.tag, version, 'service.container.image');
    case 'job': {
      const from = source.value.from;
      if (from?.$case !== 'container') {
        throw invalidArgument('service.job.from', 'this job is built from git, not mirrored: it needs a GIT build');
      }
      return withVersion(from.value.image, from.value.tag, version, 'service.job.container.image');
    }
    case 'database': {
      const db = source.value;
      if (db.mode === control.DatabaseMode.DATABASE_MODE_MANAGED) {
        throw invalidArgument('service.database.mode', 'a MANAGED database runs no image: nothing to mirror');
      }
      const image = db.image !== '' ? db.image : OFFICIAL_DATABASE_IMAGES[db.engine];
      if (image === undefined) throw invalidArgument('service.database.engine', 'has no official image');
      return withVersion(image, db.version, version, 'service.database.image');
    }
    case 'application':
      throw invalidArgument('service.application', 'an APPLICATION is built from git, not mirrored');
    case undefined:
      throw invalidArgument('service.source', 'is required: the service names no image to mirror');
  }
}

export { slug };

const MAX_NAME = 255;

/** Where the mirror keeps the source image for this job. */
export function mirrorDestination(job: bus.BuildJob, source: ImageReference, mirrorRegistry: string): ImageReference {
  const service = job.service;
  if (service === undefined) throw invalidArgument('service', 'is required');
  const tag = source.tag ?? source.digest!.replace(':', '-').slice(0, 128);
  const project = slug(job.project);
  let repository =
    job.mirrorMode === control.MirrorMode.MIRROR_MODE_SHARED
      ? `${project}/shared/${slug(source.registry)}/${source.repository}`
      : `${project}/${slug(job.environmentName)}/${slug(service.name)}`;
  if (`${mirrorRegistry}/${repository}`.length > MAX_NAME) {
    // Very long sources: keep the head readable and the name unique.
    const hash = simpleHash(repository);
    repository = `${repository.slice(0, MAX_NAME - mirrorRegistry.length - hash.length - 3).replace(/[^a-z0-9]+$/, '')}-${hash}`;
  }
  return { registry: mirrorRegistry, repository, tag };
}

function simpleHash(text: string): string {
  // FNV-1a, 32 bits: only to keep long names apart, not for security.
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

export function planMirror(job: bus.BuildJob, mirrorRegistry: string): MirrorPlan {
  if (job.service === undefined) throw invalidArgument('service', 'is required');
  const source = sourceImage(job.service, job.version);
  return { source, destination: mirrorDestination(job, source, mirrorRegistry) };
}
