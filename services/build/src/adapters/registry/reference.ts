// Image references: the distribution/reference grammar (as control validates them), with Docker Hub's
// defaults, so "nginx" means docker.io/library/nginx exactly as podman and docker read it.
import { invalidArgument } from '@stageline/errors';

export interface ImageReference {
  /** host[:port]; `docker.io` for Docker Hub. */
  readonly registry: string;
  /** The path inside the registry, e.g. `library/nginx`, `demo/staging/web`. */
  readonly repository: string;
  readonly tag?: string | undefined;
  readonly digest?: string | undefined;
}

export const DOCKER_HUB = 'docker.io';
/** Where Docker Hub's distribution API actually answers. */
const DOCKER_HUB_API = 'registry-1.docker.io';

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]{1,5})?$`);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;
const DIGEST_HEX_LENGTH: Readonly<Record<string, number>> = { sha256: 64, sha512: 128 };
const MAX_NAME_LENGTH = 255;

/** Checks a digest (`sha256:<64 hex>`); returns what is wrong, or undefined. */
export function checkDigest(value: string): string | undefined {
  const match = DIGEST.exec(value);
  if (!match) return `is not a digest (algorithm:hex): ${JSON.stringify(value)}`;
  const [, algorithm = '', hex = ''] = match;
  const length = DIGEST_HEX_LENGTH[algorithm];
  if (length === undefined) return `uses an unsupported digest algorithm "${algorithm}" (sha256 or sha512)`;
  if (hex.length !== length || !/^[0-9a-f]+$/.test(hex)) {
    return `has a malformed ${algorithm} digest: expected ${length} lowercase hex digits`;
  }
  return undefined;
}

/** Docker's rule: the first component is a registry only if it looks like a host (a dot, a port, localhost, capitals). */
function splitDomain(name: string): { registry: string; path: string } {
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  const hostLike = first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase();
  if (slash < 0 || !hostLike) {
    return { registry: DOCKER_HUB, path: name };
  }
  return { registry: first, path: name.slice(slash + 1) };
}

/**
 * Parses `[registry[:port]/]path[:tag][@digest]`. Docker Hub defaults apply: no registry means
 * docker.io, and a one-component Hub path gets `library/`. Nothing else is defaulted: a reference
 * without tag or digest has neither (callers decide; `latest` is the usual choice).
 * Throws INVALID_ARGUMENT naming `field`.
 */
export function parseReference(value: string, field = 'image'): ImageReference {
  if (value === '') throw invalidArgument(field, 'is required');
  if (/\s/.test(value)) throw invalidArgument(field, `must not contain blanks: ${JSON.stringify(value)}`);
  let rest = value;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    const problem = checkDigest(digest);
    if (problem !== undefined) throw invalidArgument(field, problem);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    if (!TAG.test(tag)) {
      throw invalidArgument(
        field,
        `has a bad tag ${JSON.stringify(tag)}: 1-128 letters, digits, "_", "." and "-", not starting with "." or "-"`,
      );
    }
    rest = rest.slice(0, colon);
  }
  if (rest === '') throw invalidArgument(field, `has no repository: ${JSON.stringify(value)}`);
  const { registry: rawRegistry, path } = splitDomain(rest);
  if (!DOMAIN.test(rawRegistry)) throw invalidArgument(field, `has a bad registry host ${JSON.stringify(rawRegistry)}`);
  const port = /:(\d+)$/.exec(rawRegistry)?.[1];
  if (port !== undefined && Number(port) > 65535) throw invalidArgument(field, `has a bad registry port ${port}`);
  const registry = rawRegistry === 'index.docker.io' ? DOCKER_HUB : rawRegistry;
  if (path === '') throw invalidArgument(field, `has no repository: ${JSON.stringify(value)}`);
  if (path !== path.toLowerCase())
    throw invalidArgument(field, `repository must be lowercase: ${JSON.stringify(path)}`);
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      throw invalidArgument(
        field,
        `has a bad repository component ${JSON.stringify(component)}: lowercase letters and digits, separated by ".", "_", "__" or "-"`,
      );
    }
  }
  const repository = registry === DOCKER_HUB && !path.includes('/') ? `library/${path}` : path;
  if (`${registry}/${repository}`.length > MAX_NAME_LENGTH) {
    throw invalidArgument(field, `must be at most ${MAX_NAME_LENGTH} characters before the tag`);
  }
  return { registry, repository, tag, digest };
}

/** The fully qualified form, `registry/repository[:tag][@digest]`. */
export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag === undefined ? '' : `:${ref.tag}`}${
    ref.digest === undefined ? '' : `@${ref.digest}`
  }`;
}

/** `registry/repository`, without tag or digest. */
export function repositoryName(ref: Pick<ImageReference, 'registry' | 'repository'>): string {
  return `${ref.registry}/${ref.repository}`;
}

/** 127.0.0.0/8, ::1 and localhost: the only hosts spoken to in plain HTTP without being listed as insecure. */
export function isLoopbackHost(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:\d+$/, '');
  return host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/** Base URL of a registry's API: plain HTTP only for loopback or explicitly insecure hosts. */
export function registryBaseUrl(registry: string, insecureHosts: ReadonlySet<string>): string {
  const host = registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
  const scheme = isLoopbackHost(registry) || insecureHosts.has(registry) ? 'http' : 'https';
  return `${scheme}://${host}`;
}
