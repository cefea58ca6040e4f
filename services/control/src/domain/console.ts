// The web console's rules, pure: which public methods a role may call (from METHOD_ROLES, the same
// table the gRPC server enforces), and whether a browser request may act on the session (CSRF).
import { METHOD_ROLES, type Role } from './access.ts';

const RANK: Record<Role, number> = { ROLE_VIEWER: 1, ROLE_DEPLOYER: 2, ROLE_ADMIN: 3 };

/**
 * `Service/method` (lowerCamel, as in METHOD_ROLES) of every public method `role` may call: what the
 * console shows as actions. Only a hint for the page: the gRPC server decides every call again.
 */
export function allowedMethods(role: Role): string[] {
  return Object.entries(METHOD_ROLES).flatMap(([service, methods]) =>
    Object.entries(methods)
      .filter(([, needed]) => RANK[role] >= RANK[needed])
      .map(([method]) => `${service.slice(service.lastIndexOf('.') + 1)}/${method}`),
  );
}

/** The cookie that names a console session. `__Host-`: Secure, Path=/ and no Domain, or browsers refuse it. */
export const SESSION_COOKIE = '__Host-stageline-session';
/** The header every state-changing request repeats the session's CSRF token in. */
export const CSRF_HEADER = 'x-stageline-csrf';
/** How long a console session lasts without signing in again. */
export const SESSION_TTL_MS = 12 * 3600 * 1000;

/** `Set-Cookie` for a session id (empty id and max age 0: sign out). */
export function sessionCookie(id: string, maxAgeMs: number): string {
  return `${SESSION_COOKIE}=${id}; Path=/; Max-Age=${Math.floor(maxAgeMs / 1000)}; HttpOnly; Secure; SameSite=Strict`;
}

/** The session id a `Cookie` header carries, if any. */
export function sessionIdOf(cookieHeader: string | undefined): string | undefined {
  for (const part of (cookieHeader ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === SESSION_COOKIE) return value.join('=') || undefined;
  }
  return undefined;
}

/**
 * May this request change something? SameSite=Strict already keeps the cookie off cross-site
 * requests; on top of it (older browsers, same-site subdomains) the request must come from the
 * console's own origin when it says where it comes from, and repeat the session's CSRF token, which
 * a page of another origin cannot read. Returns why not, or undefined.
 */
export function csrfRefusal(
  request: { method: string; origin: string | undefined; host: string | undefined; csrf: string | undefined },
  sessionCsrf: string,
): string | undefined {
  if (request.origin !== undefined && request.origin !== `https://${request.host ?? ''}`) {
    return `the request comes from ${request.origin}, not from the console's origin`;
  }
  if (request.method === 'GET' || request.method === 'HEAD') return undefined;
  if (request.csrf === undefined || request.csrf !== sessionCsrf) {
    return `a request that changes something must repeat the session's CSRF token in ${CSRF_HEADER}`;
  }
  return undefined;
}
