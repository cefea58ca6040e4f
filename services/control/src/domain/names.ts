// Validators for names and references that reach argv, URLs, DNS or the registry.
// Each returns an error message, or undefined when the value is acceptable.

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function checkDnsLabel(value: string): string | undefined {
  if (value === '') return 'is required';
  if (value.length > 63) return 'must be at most 63 characters';
  if (!DNS_LABEL.test(value)) {
    return 'must be a DNS label: lowercase letters, digits and "-", starting and ending with a letter or digit';
  }
  return undefined;
}

// Printable = no control characters (C0, DEL, C1); leading/trailing blanks are ambiguous in a UI.
const CONTROL_CHARS = /\p{Cc}/u;

export function checkStageName(value: string): string | undefined {
  if (value.trim() === '') return 'is required';
  if ([...value].length > 64) return 'must be at most 64 characters';
  if (CONTROL_CHARS.test(value)) return 'must contain printable characters only';
  if (value !== value.trim()) return 'must not start or end with blanks';
  return undefined;
}

export function checkDescription(value: string): string | undefined {
  if (value.length > 1024) return 'must be at most 1024 characters';
  // Descriptions may span lines; other control characters are refused.
  if (/\p{Cc}/u.test(value.replace(/[\n\t]/g, ''))) return 'must not contain control characters';
  return undefined;
}

// OCI distribution reference grammar (distribution/reference), without tag or digest.
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]+)?`;
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*';
const REPOSITORY = new RegExp(`^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$/;

/** An image repository reference without tag or digest, e.g. `registry.example.com:5000/team/api`. */
export function checkImageRepository(value: string): string | undefined {
  if (value === '') return 'is required';
  if (value.length > 255) return 'must be at most 255 characters';
  if (value.includes('@')) return 'must not carry a digest: put the tag in its own field';
  if (value.lastIndexOf(':') > value.lastIndexOf('/')) return 'must not carry a tag: put it in the tag field';
  if (!REPOSITORY.test(value)) return `is not a valid image reference: ${JSON.stringify(value)}`;
  return undefined;
}

export function checkImageTag(value: string): string | undefined {
  if (value === '') return 'is required';
  if (!TAG.test(value))
    return 'must be 1-128 characters of letters, digits, "_", "." and "-", not starting with "." or "-"';
  return undefined;
}

/** A full reference: repository with an optional `:tag` and/or `@digest`. */
export function checkImageReference(value: string): string | undefined {
  let rest = value;
  const at = rest.indexOf('@');
  if (at >= 0) {
    if (!DIGEST.test(rest.slice(at + 1))) return 'has a malformed digest';
    rest = rest.slice(0, at);
  }
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    const tagError = checkImageTag(rest.slice(colon + 1));
    if (tagError) return `tag ${tagError}`;
    rest = rest.slice(0, colon);
  }
  return checkImageRepository(rest);
}

const SCP_LIKE = /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!\/\/)[A-Za-z0-9._~/-]+$/;

/**
 * git URLs reach `git clone` as an argument: anything that git could read as an option
 * (leading "-") or as a remote helper (`ext::`, `fd::`) is refused, and so is every scheme
 * but https, http, ssh, git and file.
 */
export function checkGitUrl(value: string): string | undefined {
  if (value === '') return 'is required';
  if (value.length > 2048) return 'must be at most 2048 characters';
  if (value.startsWith('-')) return 'must not start with "-"';
  if (/[\s\p{Cc}]/u.test(value)) return 'must not contain blanks or control characters';
  if (value.includes('::')) return 'must not name a git transport helper ("::")';
  if (SCP_LIKE.test(value)) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an https://, http://, ssh://, git:// or file:// URL, or user@host:path';
  }
  if (!['https:', 'http:', 'ssh:', 'git:', 'file:'].includes(url.protocol)) {
    return `scheme ${url.protocol.slice(0, -1)} is not allowed: use https, http, ssh, git or file`;
  }
  if (url.protocol === 'file:') {
    if (url.host !== '') return 'file:// URLs must be local (file:///path)';
    if (url.pathname === '/' || url.pathname === '') return 'must name a repository path';
  } else if (url.hostname === '' || url.hostname.startsWith('-')) {
    return 'must name a host';
  }
  if (url.password !== '') return 'must not embed a password: pass credentials separately';
  return undefined;
}

/** git check-ref-format rules for a branch name, plus no leading "-" (it reaches argv). */
export function checkBranch(value: string): string | undefined {
  if (value.length > 255) return 'must be at most 255 characters';
  if (value.startsWith('-')) return 'must not start with "-"';
  if (
    value === '@' ||
    value.startsWith('/') ||
    value.endsWith('/') ||
    value.endsWith('.') ||
    value.endsWith('.lock') ||
    value.includes('..') ||
    value.includes('//') ||
    value.includes('@{') ||
    value.split('/').some((part) => part.startsWith('.')) ||
    /[\s\p{Cc}~^:?*[\\]/u.test(value)
  ) {
    return `is not a valid git branch name: ${JSON.stringify(value)}`;
  }
  return undefined;
}

export function checkCommit(value: string): string | undefined {
  if (!/^[0-9a-f]{7,64}$/.test(value)) return 'must be 7-64 lowercase hex digits';
  return undefined;
}

/** A relative path inside a repository: no "..", no absolute escapes, no option look-alikes. */
export function checkRepoPath(value: string): string | undefined {
  if (value.length > 1024) return 'must be at most 1024 characters';
  if (/[\p{Cc}]/u.test(value)) return 'must not contain control characters';
  const parts = value.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) return 'must not contain ".."';
  if (parts[0]?.startsWith('-')) return 'must not start with "-"';
  return undefined;
}

/** Normalizes a repository path to `a/b` form ("" for the root). */
export function normalizeRepoPath(value: string): string {
  return value
    .split('/')
    .filter((p) => p !== '' && p !== '.')
    .join('/');
}

export function checkBuildTarget(value: string): string | undefined {
  if (value === '') return undefined;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(value))
    return 'must be a Dockerfile stage name (letters, digits, ".", "_", "-")';
  return undefined;
}

export function checkEnvKey(value: string): string | undefined {
  if (value === '') return 'is required';
  if (value.length > 256) return 'must be at most 256 characters';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(value)) return 'must be letters, digits and "_", not starting with a digit';
  return undefined;
}

const CRON_FIELDS: ReadonlyArray<{ name: string; min: number; max: number; names?: readonly string[] }> = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  {
    name: 'month',
    min: 1,
    max: 12,
    names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'],
  },
  { name: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];
const CRON_MACROS = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);

/** A standard 5-field cron expression (as Kubernetes CronJob), or one of its @macros. */
export function checkCron(value: string): string | undefined {
  const expr = value.trim();
  if (expr === '') return 'is required';
  if (CRON_MACROS.has(expr)) return undefined;
  const fields = expr.split(/\s+/);
  if (fields.length !== 5)
    return `must have 5 fields (minute hour day-of-month month day-of-week), got ${fields.length}`;
  for (const [i, field] of fields.entries()) {
    const spec = CRON_FIELDS[i]!;
    for (const item of field.split(',')) {
      const [range = '', step, extra] = item.split('/');
      if (extra !== undefined || (step !== undefined && !/^[1-9][0-9]*$/.test(step))) {
        return `${spec.name} field ${JSON.stringify(field)} has a bad step`;
      }
      if (range === '*' || (range === '?' && (i === 2 || i === 4))) continue;
      const bounds = range.split('-');
      if (bounds.length > 2) return `${spec.name} field ${JSON.stringify(field)} is not a valid range`;
      const values = bounds.map((b) => {
        const named = spec.names?.indexOf(b.toLowerCase()) ?? -1;
        if (named >= 0) return named + (spec.name === 'month' ? 1 : 0);
        return /^[0-9]+$/.test(b) ? Number(b) : Number.NaN;
      });
      if (values.some((v) => Number.isNaN(v) || v < spec.min || v > spec.max)) {
        return `${spec.name} field ${JSON.stringify(field)} must be within ${spec.min}-${spec.max}`;
      }
      if (values.length === 2 && values[0]! > values[1]!) {
        return `${spec.name} field ${JSON.stringify(field)} has a reversed range`;
      }
    }
  }
  return undefined;
}
