// The cache key of a git build: SHA-256 over the build context's root path, the Dockerfile's path and
// content, the target, the values of only those environment variables the Dockerfile declares with ARG, and
// the commit. Every input is kept with its digest so that a hit or a rebuild can be explained later, input
// by input. Pure: no I/O.
import { createHash } from 'node:crypto';

export interface BuildArgValue {
  name: string;
  value: string;
  secret: boolean;
}

export interface KeySource {
  /** Build context inside the repository ("" for the root). */
  rootPath: string;
  /** Relative to rootPath. */
  dockerfilePath: string;
  dockerfileContent: string;
  target: string;
  /** Declared ARGs that the service's environment sets. */
  args: readonly BuildArgValue[];
  /** Full commit id. */
  commit: string;
}

export type InputKind = 'root_path' | 'dockerfile_path' | 'dockerfile' | 'target' | 'arg' | 'commit';

export interface KeyInput {
  /** `root_path`, `dockerfile_path`, `dockerfile`, `target`, `arg:<NAME>` or `commit`. */
  name: string;
  kind: InputKind;
  /**
   * `sha256:<hex>` of the value (of the content for the Dockerfile); for a secret ARG its keyed
   * fingerprint `hmac-sha256:<key id>:<hex>` (@stageline/secrets): a stored digest never lets anyone
   * check a guessed secret.
   */
  digest: string;
  /** The value when it may be shown: never for secret ARGs, never the Dockerfile's content. */
  value: string | null;
  secret: boolean;
}

const KEY_VERSION = 'stageline/build-key/v1';

export function sha256(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

const digestOf = (text: string) => `sha256:${sha256(text)}`;

function input(kind: InputKind, name: string, value: string, shown: boolean): KeyInput {
  return { name, kind, digest: digestOf(value), value: shown ? value : null, secret: false };
}

/** Makes the keyed digest of a secret value (Secrets.fingerprint, under the installation's active key). */
export type Fingerprint = (secretValue: string) => string;

/**
 * The inputs in the key's canonical order: fixed fields, then ARGs by name, then the commit. A secret
 * ARG goes in by its fingerprint: after a key rotation it differs, so such a build runs once more.
 */
export function keyInputs(source: KeySource, fingerprint: Fingerprint): KeyInput[] {
  const args = [...source.args].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return [
    input('root_path', 'root_path', source.rootPath, true),
    input('dockerfile_path', 'dockerfile_path', source.dockerfilePath, true),
    input('dockerfile', 'dockerfile', source.dockerfileContent, false),
    input('target', 'target', source.target, true),
    ...args.map((a) =>
      a.secret
        ? { name: `arg:${a.name}`, kind: 'arg' as const, digest: fingerprint(a.value), value: null, secret: true }
        : input('arg', `arg:${a.name}`, a.value, true),
    ),
    input('commit', 'commit', source.commit, true),
  ];
}

/** Hex SHA-256 over the inputs' names and digests, in order. */
export function cacheKey(inputs: readonly KeyInput[]): string {
  return sha256([KEY_VERSION, ...inputs.map((i) => `${i.name}=${i.digest}`)].join('\n'));
}

/** The image tag a key names in the mirror: the whole key, so that a tag never stands for two keys. */
export function imageTag(key: string): string {
  return `build-${key}`;
}

/** Lowercase letters and digits joined by "-": a valid repository path component from any text. */
export function slug(text: string): string {
  const s = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return s === '' ? 'default' : s;
}

/**
 * A git URL without credentials, scheme and host lowercased, no trailing "/" or ".git": two spellings
 * of one repository name it the same way. scp-like `user@host:path` becomes `ssh://host/path`.
 */
export function normalizeGitUrl(url: string): string {
  const scp = /^(?:[^@/\s]+@)?([^:/\s]+):(?!\/\/)(.+)$/.exec(url);
  if (scp && !/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    return `ssh://${scp[1]!.toLowerCase()}/${scp[2]!.replace(/^\/+/, '')}`.replace(/(\.git)?\/*$/, '');
  }
  try {
    const u = new URL(url);
    const port = u.port === '' ? '' : `:${u.port}`;
    const path = decodeURIComponent(u.pathname).replace(/(\.git)?\/*$/, '');
    return `${u.protocol.toLowerCase()}//${u.hostname.toLowerCase()}${port}${path}`;
  } catch {
    return url;
  }
}

/**
 * The mirror repository path of a git repository: its last path segment, slugged, and a short hash of
 * the normalized URL so that two repositories with the same name never share images.
 */
export function repositorySlug(gitUrl: string): string {
  const normalized = normalizeGitUrl(gitUrl);
  const last =
    normalized
      .split('/')
      .filter((p) => p !== '')
      .at(-1) ?? 'repo';
  return `${slug(last).slice(0, 60)}-${sha256(normalized).slice(0, 8)}`;
}

/** Where built images of this repository live in the mirror: `<project>/<repo-slug>`. */
export function buildRepository(project: string, gitUrl: string): string {
  return `${slug(project)}/${repositorySlug(gitUrl)}`;
}

// --- explanations -------------------------------------------------------------------------------

export interface InputChange {
  name: string;
  digest: string;
  changed: boolean;
  detail: string;
}

const short = (v: string | null, n = 12) => (v === null ? '' : v.length > n ? `${v.slice(0, n)}` : v);
const shown = (v: string | null) => (v === null ? '(secret)' : `\`${v}\``);

function describe(i: KeyInput): string {
  switch (i.kind) {
    case 'root_path':
      return `build context \`/${i.value ?? ''}\``;
    case 'dockerfile_path':
      return `Dockerfile path \`${i.value ?? ''}\``;
    case 'dockerfile':
      return `Dockerfile content ${i.digest.slice(0, 19)}`;
    case 'target':
      return i.value === '' ? 'no build target (last stage)' : `build target \`${i.value}\``;
    case 'arg':
      return `ARG \`${i.name.slice(4)}\` = ${shown(i.value)}`;
    case 'commit':
      return `commit \`${short(i.value)}\``;
  }
}

/** The key id of a fingerprint `hmac-sha256:<key id>:<hex>` (undefined for an older, plain digest). */
const fingerprintKey = (digest: string) => /^hmac-sha256:([^:]+):/.exec(digest)?.[1];

function secretChange(before: string, after: string): string {
  const [a, b] = [fingerprintKey(before), fingerprintKey(after)];
  return a !== undefined && b !== undefined && a !== b
    ? `its secret value was fingerprinted under another key (${a} → ${b}: a key rotation), so it is taken as changed`
    : 'its secret value changed';
}

function describeChange(before: KeyInput, after: KeyInput): string {
  switch (after.kind) {
    case 'root_path':
      return `build context changed: \`/${before.value ?? ''}\` → \`/${after.value ?? ''}\``;
    case 'dockerfile_path':
      return `Dockerfile path changed: \`${before.value ?? ''}\` → \`${after.value ?? ''}\``;
    case 'dockerfile':
      return `Dockerfile content changed: ${before.digest.slice(0, 19)} → ${after.digest.slice(0, 19)}`;
    case 'target':
      return `build target changed: \`${before.value ?? ''}\` → \`${after.value ?? ''}\``;
    case 'arg':
      return (
        `ARG \`${after.name.slice(4)}\` differs: ` +
        (after.secret || before.secret
          ? secretChange(before.digest, after.digest)
          : `${shown(before.value)} → ${shown(after.value)}`) +
        ': environment-specific ARG values rebuild per environment'
      );
    case 'commit':
      return `new commit: \`${short(before.value)}\` → \`${short(after.value)}\``;
  }
}

/**
 * Each current input, marked changed when it differs from the previous build's (every input is new
 * when there is none), followed by inputs the previous build had and this one does not.
 */
export function explainInputs(current: readonly KeyInput[], previous: readonly KeyInput[] | undefined): InputChange[] {
  const before = new Map((previous ?? []).map((i) => [i.name, i]));
  const out: InputChange[] = current.map((i) => {
    const old = before.get(i.name);
    if (previous === undefined || old?.digest === i.digest) {
      return { name: i.name, digest: i.digest, changed: false, detail: describe(i) };
    }
    if (old === undefined) {
      const detail =
        i.kind === 'arg'
          ? `ARG \`${i.name.slice(4)}\` is now set from the environment: ${shown(i.value)}`
          : `${describe(i)} (new input)`;
      return { name: i.name, digest: i.digest, changed: true, detail };
    }
    return { name: i.name, digest: i.digest, changed: true, detail: describeChange(old, i) };
  });
  const names = new Set(current.map((i) => i.name));
  for (const old of previous ?? []) {
    if (names.has(old.name)) continue;
    const detail =
      old.kind === 'arg'
        ? `ARG \`${old.name.slice(4)}\` is no longer set from the environment (was ${shown(old.value)})`
        : `${describe(old)} is no longer an input`;
    out.push({ name: old.name, digest: '', changed: true, detail });
  }
  return out;
}
