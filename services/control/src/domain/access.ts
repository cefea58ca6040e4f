// Who may do what on the public API: the role each method needs, the token format, the rules of a
// token request, and which projects a caller sees. Pure: no I/O, no transport.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { invalidArgument } from '@stageline/errors';
import { checkDnsLabel } from './names.ts';

export type Role = 'ROLE_VIEWER' | 'ROLE_DEPLOYER' | 'ROLE_ADMIN';
export const ROLES: readonly Role[] = ['ROLE_VIEWER', 'ROLE_DEPLOYER', 'ROLE_ADMIN'];

/** The caller as the server authenticated it (the transport's principal, structurally). */
export type Caller =
  | { kind: 'service'; service: string }
  | { kind: 'token'; tokenId: string; tokenName: string; role: Role; projects: readonly string[] };

/** How the audit trail names a caller: `token:<name> (<id>)` or `service:<name>`. */
export function actorOf(caller: Caller): string {
  return caller.kind === 'service' ? `service:${caller.service}` : `token:${caller.tokenName} (${caller.tokenId})`;
}

/**
 * The role each public method needs. Reads: VIEWER. Actions on what is deployed (and a plan, which
 * is a read): DEPLOYER. The environment model itself — environments, services, stages, skipped
 * flags — and tokens: ADMIN (Qovery's "manager", Argo CD's project admin).
 */
export const METHOD_ROLES: Readonly<Record<string, Readonly<Record<string, Role>>>> = {
  'stageline.control.v1.EnvironmentService': {
    getEnvironment: 'ROLE_VIEWER',
    listEnvironments: 'ROLE_VIEWER',
    listServices: 'ROLE_VIEWER',
    createEnvironment: 'ROLE_ADMIN',
    updateEnvironment: 'ROLE_ADMIN',
    cloneEnvironment: 'ROLE_ADMIN',
    addService: 'ROLE_ADMIN',
    updateService: 'ROLE_ADMIN',
    removeService: 'ROLE_ADMIN',
    rotateWebhookSecret: 'ROLE_ADMIN',
    // Operator configuration: which clusters an environment may reach.
    listKubeContexts: 'ROLE_ADMIN',
  },
  'stageline.control.v1.PipelineService': {
    getPipeline: 'ROLE_VIEWER',
    createStage: 'ROLE_ADMIN',
    updateStage: 'ROLE_ADMIN',
    moveStage: 'ROLE_ADMIN',
    deleteStage: 'ROLE_ADMIN',
    moveService: 'ROLE_ADMIN',
    setServiceSkipped: 'ROLE_ADMIN',
  },
  'stageline.control.v1.DeploymentService': {
    getDeployment: 'ROLE_VIEWER',
    listDeployments: 'ROLE_VIEWER',
    watchDeployment: 'ROLE_VIEWER',
    streamLogs: 'ROLE_VIEWER',
    planDeployment: 'ROLE_VIEWER',
    explainBuild: 'ROLE_VIEWER',
    listReleases: 'ROLE_VIEWER',
    listCronRuns: 'ROLE_VIEWER',
    getRuntimeStatus: 'ROLE_VIEWER',
    streamServiceLogs: 'ROLE_VIEWER',
    deployEnvironment: 'ROLE_DEPLOYER',
    redeployEnvironment: 'ROLE_DEPLOYER',
    stopEnvironment: 'ROLE_DEPLOYER',
    restartEnvironment: 'ROLE_DEPLOYER',
    deleteEnvironment: 'ROLE_DEPLOYER',
    deployService: 'ROLE_DEPLOYER',
    stopService: 'ROLE_DEPLOYER',
    restartService: 'ROLE_DEPLOYER',
    deleteService: 'ROLE_DEPLOYER',
    rollbackEnvironment: 'ROLE_DEPLOYER',
    cancelDeployment: 'ROLE_DEPLOYER',
    resumeDeployment: 'ROLE_DEPLOYER',
    redeployService: 'ROLE_DEPLOYER',
  },
  'stageline.control.v1.AccessService': {
    createToken: 'ROLE_ADMIN',
    listTokens: 'ROLE_ADMIN',
    revokeToken: 'ROLE_ADMIN',
    rotateSecretKey: 'ROLE_ADMIN',
  },
};

/** True when the caller may see and act on environments of `project`. */
export function seesProject(caller: Caller, project: string): boolean {
  return caller.kind === 'service' || caller.projects.length === 0 || caller.projects.includes(project);
}

/**
 * The projects a list may show: `undefined` for every project; otherwise the names to filter by
 * (empty: nothing is visible). `asked` is the request's project ('' for all).
 */
export function visibleProjects(caller: Caller, asked: string): readonly string[] | undefined {
  const scope = caller.kind === 'token' && caller.projects.length > 0 ? caller.projects : undefined;
  if (asked === '') return scope;
  return scope === undefined || scope.includes(asked) ? [asked] : [];
}

// --- tokens -----------------------------------------------------------------------------------

/** `stl_<32 hex: the token id without dashes>_<43 base64url: 256 random bits>`. */
const TOKEN = /^stl_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;

export interface IssuedToken {
  /** The token's id (a UUID). */
  id: string;
  /** What the caller is given, once. */
  token: string;
  /** What is stored: SHA-256 of the secret part, hex. (256 random bits need no slow hash.) */
  secretHash: string;
}

export function issueToken(id: string): IssuedToken {
  const secret = randomBytes(32).toString('base64url');
  return { id, token: `stl_${id.replaceAll('-', '')}_${secret}`, secretHash: hashSecret(secret) };
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** The id and secret of a well-formed token; undefined for anything else. */
export function parseToken(token: string): { id: string; secret: string } | undefined {
  const match = TOKEN.exec(token);
  if (match?.[1] === undefined || match[2] === undefined) return undefined;
  const hex = match[1];
  const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { id, secret: match[2] };
}

/** Constant-time: a wrong secret takes as long to refuse as a nearly right one. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface TokenRecord {
  id: string;
  name: string;
  role: Role;
  projects: string[];
  secretHash: string;
  createdAt: Date;
  expiresAt: Date | undefined;
  revokedAt: Date | undefined;
  createdBy: string;
}

/** Valid now: neither revoked nor expired. */
export function isLive(token: TokenRecord, now: Date): boolean {
  return token.revokedAt === undefined && (token.expiresAt === undefined || token.expiresAt > now);
}

const NAME = /^[A-Za-z0-9._-]{1,63}$/;
const MIN_TTL_S = 60;
const MAX_TTL_S = 10 * 365 * 24 * 3600;

export interface TokenRequest {
  name: string;
  role: string;
  projects: readonly string[];
  ttlSeconds: number;
}

/** Validates a CreateToken request; INVALID_ARGUMENT names the field. */
export function checkTokenRequest(req: TokenRequest, now: Date): { expiresAt: Date | undefined; role: Role } {
  if (!NAME.test(req.name)) {
    throw invalidArgument('name', "1-63 characters: letters, digits, '.', '_' and '-'");
  }
  if (!ROLES.includes(req.role as Role)) {
    throw invalidArgument('role', `must be one of ${ROLES.join(', ')}`);
  }
  req.projects.forEach((project, i) => {
    const error = checkDnsLabel(project);
    if (error !== undefined) throw invalidArgument(`projects[${i}]`, error);
  });
  if (new Set(req.projects).size !== req.projects.length) throw invalidArgument('projects', 'lists a project twice');
  if (req.ttlSeconds !== 0 && (req.ttlSeconds < MIN_TTL_S || req.ttlSeconds > MAX_TTL_S)) {
    throw invalidArgument('ttl_seconds', `0 (never expires) or ${MIN_TTL_S} to ${MAX_TTL_S}`);
  }
  return {
    role: req.role as Role,
    expiresAt: req.ttlSeconds === 0 ? undefined : new Date(now.getTime() + req.ttlSeconds * 1000),
  };
}
