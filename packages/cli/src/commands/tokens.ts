// API tokens: token create|list|revoke (AccessService: every method needs ROLE_ADMIN). A token's
// secret is shown once, when it is created; the server keeps only its hash.
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import type { Context } from '../context.ts';
import { UsageError } from '../errors.ts';
import { localTime, table } from '../view/format.ts';

const ROLES: Record<string, control.Role> = {
  viewer: control.Role.ROLE_VIEWER,
  deployer: control.Role.ROLE_DEPLOYER,
  admin: control.Role.ROLE_ADMIN,
};

export const roleName = (r: control.Role) => control.roleToJSON(r).replace('ROLE_', '').toLowerCase();

/** `viewer`, `deployer`, `admin` (or ROLE_VIEWER …). */
export function parseRole(value: string): control.Role {
  const role = ROLES[value.toLowerCase().replace(/^role_/, '')];
  if (role === undefined) throw new UsageError(`--role must be one of ${Object.keys(ROLES).join(', ')}`);
  return role;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/** `30d`, `12h`, `45m`, `3600s`, `3600` (seconds); `0`: never expires. */
export function parseTtl(value: string): number {
  const match = /^(\d+)([smhdw]?)$/.exec(value.trim());
  if (match === null) {
    throw new UsageError(`--ttl ${value}: a number with a unit, e.g. 30d, 12h, 45m, 3600s; 0 never expires`);
  }
  return Number(match[1]) * UNIT_SECONDS[match[2] || 's']!;
}

const projectsText = (t: control.Token) => (t.projects.length === 0 ? 'all' : t.projects.join(','));
const expiresText = (t: control.Token) => (t.expiresAt === undefined ? 'never' : localTime(t.expiresAt));

export async function tokenCreate(
  ctx: Context,
  name: string,
  opts: { role: string; projects: string[]; ttl?: string },
): Promise<void> {
  const role = parseRole(opts.role);
  const ttlSeconds = parseTtl(opts.ttl ?? '0');
  const response = await callUnary(ctx.clients.access, 'createToken', {
    name,
    role,
    projects: opts.projects,
    ttlSeconds: String(ttlSeconds),
  });
  ctx.emit(control.CreateTokenResponse.toJSON(response), () => {
    const info = response.info;
    // The token alone on stdout (`… > ci.token` keeps just it); what it is, and the warning, on stderr.
    ctx.err(
      `created token ${name} (id ${response.id}): ${info ? roleName(info.role) : roleName(role)}, projects ${
        info ? projectsText(info) : 'all'
      }, expires ${info ? expiresText(info) : '?'}`,
    );
    ctx.out(response.token);
    ctx.err(
      ctx.paint(
        'yellow',
        'it will not be shown again: store it now (stageline --token-file FILE, STAGELINE_TOKEN or `stageline config set token`).',
      ),
    );
  });
}

async function listAll(ctx: Context): Promise<control.Token[]> {
  return (await callUnary(ctx.clients.access, 'listTokens', {})).tokens;
}

export async function tokenList(ctx: Context): Promise<void> {
  const tokens = await listAll(ctx);
  ctx.emit(control.ListTokensResponse.toJSON({ tokens }), () => {
    if (tokens.length === 0) {
      ctx.out('no tokens.');
      return;
    }
    const now = new Date();
    const rows = [
      ['ID', 'NAME', 'ROLE', 'PROJECTS', 'CREATED', 'EXPIRES', 'REVOKED', 'CREATED BY'].map((h) => ctx.paint('dim', h)),
    ];
    for (const t of tokens) {
      const expired = t.expiresAt !== undefined && t.expiresAt <= now;
      const dead = t.revokedAt !== undefined || expired;
      const cells = [
        t.id,
        t.name,
        roleName(t.role),
        projectsText(t),
        localTime(t.createdAt),
        `${expiresText(t)}${expired ? ' (expired)' : ''}`,
        t.revokedAt === undefined ? '-' : localTime(t.revokedAt),
        t.createdBy,
      ];
      rows.push(dead ? cells.map((c) => ctx.paint('dim', c)) : cells);
    }
    ctx.out(...table(rows));
  });
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Revokes a token by id, or by the name of a token that is not revoked (names are unique among those). */
export async function tokenRevoke(ctx: Context, ref: string): Promise<void> {
  let id = ref;
  if (!UUID.test(ref)) {
    const found = (await listAll(ctx)).filter((t) => t.name === ref && t.revokedAt === undefined);
    if (found.length !== 1) {
      throw new UsageError(`no token ${ref} that is not revoked (stageline token list shows them, with their ids)`);
    }
    id = found[0]!.id;
  }
  const response = await callUnary(ctx.clients.access, 'revokeToken', { id });
  ctx.emit(control.RevokeTokenResponse.toJSON(response), () => {
    const t = response.token;
    ctx.out(`token ${t ? `${t.name} (${t.id})` : id} revoked${t?.revokedAt ? ` at ${localTime(t.revokedAt)}` : ''}`);
  });
}
