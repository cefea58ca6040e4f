import { isIP } from 'node:net';

// The source policy: where git, image and chart URLs may point. `file://` URLs and hosts that are
// loopback, link-local or private addresses are refused unless the operator allows them, so that an
// environment cannot make the build or deploy workers read the host's files or reach what only they
// can reach (the cloud metadata service at 169.254.169.254, the database, the services themselves).
//
// STAGELINE_SOURCE_ALLOW is a comma-separated list of exceptions, each one of
//   - a URL prefix with its scheme: `file:///var/lib/stageline/repos/`, `http://10.1.2.3:3000/git/`
//     (compared with the URL as parsed and normalized, so `..` cannot climb out of it);
//   - a host, or host:port: `127.0.0.1:5001`, `registry.lan` (any port of that host).
// Unset or empty: no exception. Host names are checked as written: a public name that resolves to a
// private address is not caught here (see README, Security).

export const SOURCE_ALLOW_VARIABLE = 'STAGELINE_SOURCE_ALLOW';

export type SourceRule = 'file' | 'loopback' | 'link-local' | 'private';

export interface SourcePolicy {
  /** URL prefixes, normalized. */
  prefixes: string[];
  /** `host` (any port) or `host:port`, hosts normalized as URL hosts (lowercase, IPv6 in brackets). */
  hosts: string[];
}

export const DENY_ALL: SourcePolicy = { prefixes: [], hosts: [] };

/** Parses STAGELINE_SOURCE_ALLOW; throws an Error naming the first bad entry. */
export function parseSourcePolicy(value: string): SourcePolicy {
  const policy: SourcePolicy = { prefixes: [], hosts: [] };
  for (const entry of value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(entry)) {
      let url: URL;
      try {
        url = new URL(entry);
      } catch {
        throw new Error(`${JSON.stringify(entry)} is not a URL`);
      }
      if (url.protocol === 'file:' && !url.pathname.endsWith('/')) {
        throw new Error(`${JSON.stringify(entry)}: a file:// prefix must name a directory (end with "/")`);
      }
      policy.prefixes.push(url.href);
      continue;
    }
    const host = hostPart(entry);
    if (host === undefined) throw new Error(`${JSON.stringify(entry)} is neither a URL prefix nor a host[:port]`);
    policy.hosts.push(host.port === '' ? host.hostname : `${host.hostname}:${host.port}`);
  }
  return policy;
}

/** `host[:port]` normalized the way URLs normalize hosts; undefined when it is not one. */
function hostPart(text: string): { hostname: string; port: string } | undefined {
  if (text === '' || /[/@\s?#\\]/.test(text)) return undefined;
  try {
    const url = new URL(`http://${text}`);
    return { hostname: url.hostname, port: url.port === '' && /:80$/.test(text) ? '80' : url.port };
  } catch {
    return undefined;
  }
}

function ipv4(parts: number[], rule: (a: number, b: number) => SourceRule | undefined): SourceRule | undefined {
  return rule(parts[0]!, parts[1]!);
}

/** Which rule refuses a host (as URL.hostname gives it), if any. */
export function hostRule(hostname: string): SourceRule | undefined {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return 'loopback';
  const kind = isIP(host);
  if (kind === 4) {
    return ipv4(host.split('.').map(Number), (a, b) => {
      if (a === 127 || a === 0) return 'loopback';
      if (a === 169 && b === 254) return 'link-local';
      if (
        a === 10 ||
        (a === 172 && b >= 16 && b <= 31) ||
        (a === 192 && b === 168) ||
        (a === 100 && b >= 64 && b <= 127)
      )
        return 'private';
      return undefined;
    });
  }
  if (kind === 6) {
    // IPv4-mapped (::ffff:a.b.c.d, which URL writes as ::ffff:xxxx:xxxx): judged as the IPv4 address.
    const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
    if (mapped) {
      const hi = Number.parseInt(mapped[1]!, 16);
      const lo = Number.parseInt(mapped[2]!, 16);
      return hostRule(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
    }
    if (host === '::1' || host === '::') return 'loopback';
    if (/^fe[89ab]/.test(host)) return 'link-local';
    if (/^f[cd]/.test(host)) return 'private';
    return undefined;
  }
  return undefined;
}

const RULE_TEXT: Record<SourceRule, string> = {
  file: "file:// URLs read the workers' own disk",
  loopback: "loopback addresses reach the workers' own host",
  'link-local': "link-local addresses reach the host's metadata services",
  private: 'private addresses reach the internal network',
};

function refusal(rule: SourceRule, what: string): string {
  return `${what} is refused by the source policy (rule ${rule}: ${RULE_TEXT[rule]}); an operator may allow it in ${SOURCE_ALLOW_VARIABLE}`;
}

function hostAllowed(policy: SourcePolicy, hostname: string, port: string): boolean {
  return policy.hosts.includes(hostname) || (port !== '' && policy.hosts.includes(`${hostname}:${port}`));
}

/**
 * Checks a URL (git, chart) against the policy: why it is refused, or undefined. `user@host:path` (scp-like
 * git) is judged by its host. URLs that do not parse are left to the field's own validation.
 */
export function checkSourceUrl(policy: SourcePolicy, value: string): string | undefined {
  const scp = /^[^@/:]+@([^:/]+):(?!\/\/)/.exec(value);
  if (scp) {
    const host = hostPart(scp[1]!);
    if (host === undefined) return undefined;
    const rule = hostRule(host.hostname);
    if (rule === undefined || hostAllowed(policy, host.hostname, '22')) return undefined;
    return refusal(rule, `host ${host.hostname}`);
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (policy.prefixes.some((p) => url.href.startsWith(p))) return undefined;
  if (url.protocol === 'file:') return refusal('file', `${url.href}`);
  const rule = hostRule(url.hostname);
  if (rule === undefined) return undefined;
  const port =
    url.port !== '' ? url.port : ({ 'http:': '80', 'https:': '443', 'ssh:': '22', 'git:': '9418' }[url.protocol] ?? '');
  if (hostAllowed(policy, url.hostname, port)) return undefined;
  return refusal(rule, `host ${url.host}`);
}

/** Checks an image reference's registry (`registry[:port]/path`; none: Docker Hub) against the policy. */
export function checkImageSource(policy: SourcePolicy, reference: string): string | undefined {
  const slash = reference.indexOf('/');
  if (slash < 0) return undefined;
  const first = reference.slice(0, slash);
  // As distribution/reference: the first component is a registry when it has a "." or ":", or is localhost.
  if (!/[.:]/.test(first) && first !== 'localhost' && !first.startsWith('[')) return undefined;
  const host = hostPart(first);
  if (host === undefined) return undefined;
  const rule = hostRule(host.hostname);
  if (rule === undefined || hostAllowed(policy, host.hostname, host.port === '' ? '443' : host.port)) return undefined;
  return refusal(rule, `registry ${first}`);
}
