import { createHash } from 'node:crypto';

// The one namespace rule (control resolves and checks it at input, deploy at deploy time) and the
// Helm release names derived from it.

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const LABEL_MAX = 63;

/**
 * Namespaces no environment may use: Kubernetes' own and Stageline's. Exact names; a project called
 * `kube` may still have `kube-staging`.
 */
export const RESERVED_NAMESPACES: readonly string[] = [
  'default',
  'kube-system',
  'kube-public',
  'kube-node-lease',
  'stageline',
  'stageline-system',
];

function hex(value: string, length: number): string {
  return createHash('sha256').update(value).digest('hex').slice(0, length);
}

/**
 * The default namespace of environment `project/name` (both DNS labels): `<project>-<name>`, with
 * every "-" of the project doubled so that the join is injective — `a-b/c` is `a--b-c`, `a/b-c` is
 * `a-b-c` (the first single "-" ends the project: a label's "-" runs never touch its ends). A join
 * longer than a DNS label keeps its first 52 characters and adds 10 hex digits of SHA-256 of
 * `project/name`; the store's unique index refuses the (unlikely) collision that leaves.
 */
export function defaultNamespace(project: string, name: string): string {
  const joined = `${project.replace(/-/g, '--')}-${name}`;
  if (joined.length <= LABEL_MAX) return joined;
  return `${joined.slice(0, LABEL_MAX - 11).replace(/-+$/, '')}-${hex(`${project}/${name}`, 10)}`;
}

/** The namespace an environment deploys into: its own setting, else the default. */
export function resolveNamespace(project: string, name: string, namespace: string): string {
  return namespace !== '' ? namespace : defaultNamespace(project, name);
}

/** Why `namespace` cannot be an environment's, or undefined when it can. */
export function checkNamespace(namespace: string): string | undefined {
  if (namespace.length > LABEL_MAX) return `must be at most ${LABEL_MAX} characters`;
  if (!DNS_LABEL.test(namespace)) {
    return 'must be a DNS label: lowercase letters, digits and "-", starting and ending with a letter or digit';
  }
  if (RESERVED_NAMESPACES.includes(namespace)) {
    return `${JSON.stringify(namespace)} is reserved (${RESERVED_NAMESPACES.join(', ')})`;
  }
  return undefined;
}

// Helm refuses release names longer than 53 characters.
export const HELM_RELEASE_MAX = 53;

/**
 * The Helm release name of a service: `<service>-<12 hex digits of the environment id's SHA-256>`, so
 * that two environments' releases never share a name even in one namespace (one environment's upgrade
 * can never overwrite another's release). Shortened with a hash of the service name when Helm's limit
 * needs it.
 */
export function helmReleaseName(environmentId: string, serviceName: string): string {
  const key = hex(environmentId, 12);
  const full = `${serviceName}-${key}`;
  if (full.length <= HELM_RELEASE_MAX) return full;
  const head = serviceName.slice(0, HELM_RELEASE_MAX - key.length - 10).replace(/-+$/, '');
  return `${head}-${hex(serviceName, 8)}-${key}`;
}
