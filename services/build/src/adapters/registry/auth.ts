// Registry authentication: WWW-Authenticate challenges, bearer tokens (the distribution token spec) and
// basic credentials. Secrets live only in request headers: never in messages, logs or errors.

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

/** Credentials for a registry host (host[:port]), or undefined for anonymous access. */
export type CredentialsLookup = (registry: string) => Credentials | undefined;

export interface Challenge {
  scheme: 'bearer' | 'basic';
  /** Lowercased parameter names: realm, service, scope, error … */
  params: Record<string, string>;
}

/**
 * Parses `Bearer realm="https://auth/token",service="registry",scope="repository:a/b:pull"` (also
 * `Basic realm="…"`, and several challenges in one header). Quoted values may contain commas and escaped
 * quotes. Returns the first challenge of a scheme registries use (bearer, then basic), or undefined.
 */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (header === null) return undefined;
  const challenges: Challenge[] = [];
  let current: { scheme: string; params: Record<string, string> } | undefined;
  let i = 0;
  const token = /[A-Za-z0-9!#$%&'*+.^_`|~-]+/y;
  while (i < header.length) {
    const c = header[i];
    if (c === ' ' || c === ',' || c === '\t') {
      i++;
      continue;
    }
    token.lastIndex = i;
    const name = token.exec(header)?.[0];
    if (name === undefined) break; // malformed: keep what was read
    i += name.length;
    let j = i;
    while (header[j] === ' ') j++;
    if (header[j] !== '=') {
      current = { scheme: name.toLowerCase(), params: {} };
      challenges.push(current as Challenge);
      continue;
    }
    j++;
    while (header[j] === ' ') j++;
    let value = '';
    if (header[j] === '"') {
      j++;
      while (j < header.length && header[j] !== '"') {
        if (header[j] === '\\' && j + 1 < header.length) j++;
        value += header[j];
        j++;
      }
      j++; // closing quote
    } else {
      token.lastIndex = j;
      value = token.exec(header)?.[0] ?? '';
      j += value.length;
    }
    i = j;
    if (current !== undefined) current.params[name.toLowerCase()] = value;
  }
  return challenges.find((ch) => ch.scheme === 'bearer') ?? challenges.find((ch) => ch.scheme === 'basic');
}

export interface TokenResponse {
  token: string;
  /** Epoch ms after which the token is not reused. */
  expiresAt: number;
}

/** Reads a token endpoint's JSON answer (`token` or `access_token`, `expires_in` seconds, default 60). */
export function readTokenResponse(body: unknown, now: number): TokenResponse | undefined {
  const b = body as { token?: unknown; access_token?: unknown; expires_in?: unknown } | null;
  if (b === null || typeof b !== 'object') return undefined;
  const token = typeof b.token === 'string' && b.token !== '' ? b.token : b.access_token;
  if (typeof token !== 'string' || token === '') return undefined;
  const seconds = typeof b.expires_in === 'number' && b.expires_in > 0 ? b.expires_in : 60;
  // Renew a little early: a token that expires in flight costs a 401 and a retry.
  return { token, expiresAt: now + Math.max(seconds - 10, 5) * 1000 };
}

export function basicAuthorization(credentials: Credentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64')}`;
}

/** Scope strings, merged per repository: `repository:a:pull` + `repository:a:push` → `repository:a:pull,push`. */
export function mergeScopes(scopes: readonly string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const scope of scopes.flatMap((s) => s.split(' ')).filter((s) => s !== '')) {
    const colon = scope.lastIndexOf(':');
    if (colon <= 0) {
      byResource.set(scope, byResource.get(scope) ?? new Set());
      continue;
    }
    const resource = scope.slice(0, colon);
    const actions = byResource.get(resource) ?? new Set<string>();
    for (const action of scope.slice(colon + 1).split(',')) if (action !== '') actions.add(action);
    byResource.set(resource, actions);
  }
  return [...byResource.entries()]
    .map(([resource, actions]) => (actions.size === 0 ? resource : `${resource}:${[...actions].sort().join(',')}`))
    .sort();
}
