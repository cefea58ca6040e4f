import { notFound } from '@stageline/errors';
import { control } from '@stageline/proto';
import {
  actorOf,
  type Caller,
  checkTokenRequest,
  hashSecret,
  isLive,
  issueToken,
  parseToken,
  secretMatches,
  type TokenRecord,
} from '../domain/access.ts';
import type { Clock } from './model.ts';

// AccessService's use cases, and the check every public call makes: token → caller.

export interface TokenStore {
  insert(token: TokenRecord): Promise<void>;
  get(id: string): Promise<TokenRecord | undefined>;
  list(): Promise<TokenRecord[]>;
  revoke(id: string, at: Date): Promise<TokenRecord>;
}

export interface AccessAppDeps {
  tokens: TokenStore;
  newId: () => string;
  clock: Clock;
  /** How long a verified token is trusted without reading it again (revocations elsewhere). Default 5 s. */
  cacheMs?: number;
}

type TokenCaller = Extract<Caller, { kind: 'token' }>;

/** The enum's name for a number ('' for none): the domain speaks role names. */
const roleName = (role: control.Role): string =>
  (Object.entries(control.Role).find(([, n]) => n === role)?.[0] ?? '') as string;

const BOOTSTRAP_NAME = 'bootstrap-admin';

export function tokenView(t: TokenRecord): control.Token {
  return {
    id: t.id,
    name: t.name,
    role: control.Role[t.role],
    projects: t.projects,
    createdAt: t.createdAt,
    expiresAt: t.expiresAt,
    revokedAt: t.revokedAt,
    createdBy: t.createdBy,
  };
}

export class AccessApp {
  readonly #deps: AccessAppDeps;
  readonly #cache = new Map<string, { record: TokenRecord | undefined; until: number }>();

  constructor(deps: AccessAppDeps) {
    this.#deps = deps;
  }

  async createToken(req: control.CreateTokenRequest, caller: Caller): Promise<control.CreateTokenResponse> {
    const now = this.#deps.clock.now();
    const { role, expiresAt } = checkTokenRequest(
      { name: req.name, role: roleName(req.role), projects: req.projects, ttlSeconds: Number(req.ttlSeconds) },
      now,
    );
    const issued = issueToken(this.#deps.newId());
    const record: TokenRecord = {
      id: issued.id,
      name: req.name,
      role,
      projects: [...req.projects],
      secretHash: issued.secretHash,
      createdAt: now,
      expiresAt,
      revokedAt: undefined,
      createdBy: actorOf(caller),
    };
    await this.#deps.tokens.insert(record);
    return { id: issued.id, token: issued.token, info: tokenView(record) };
  }

  async listTokens(): Promise<control.ListTokensResponse> {
    return { tokens: (await this.#deps.tokens.list()).map(tokenView) };
  }

  async revokeToken(req: control.RevokeTokenRequest): Promise<control.RevokeTokenResponse> {
    if (parseUuid(req.id) === undefined) throw notFound('token', req.id, 'id');
    const token = await this.#deps.tokens.revoke(req.id, this.#deps.clock.now());
    this.#cache.delete(req.id);
    return { token: tokenView(token) };
  }

  /** The caller a bearer token stands for; undefined when malformed, unknown, revoked or expired. */
  async verify(token: string): Promise<TokenCaller | undefined> {
    const parsed = parseToken(token);
    if (parsed === undefined) return undefined;
    const now = this.#deps.clock.now();
    let cached = this.#cache.get(parsed.id);
    if (cached === undefined || cached.until <= now.getTime()) {
      cached = { record: await this.#deps.tokens.get(parsed.id), until: now.getTime() + (this.#deps.cacheMs ?? 5000) };
      if (this.#cache.size > 10_000) this.#cache.clear();
      this.#cache.set(parsed.id, cached);
    }
    const record = cached.record;
    if (record === undefined || !isLive(record, now) || !secretMatches(parsed.secret, record.secretHash)) {
      return undefined;
    }
    return { kind: 'token', tokenId: record.id, tokenName: record.name, role: record.role, projects: record.projects };
  }

  /**
   * Makes the token an operator handed to this install (set-up's admin.token) a live admin token,
   * once: an existing one is left as it is, a revoked one stays revoked.
   */
  async ensureBootstrapToken(token: string): Promise<'created' | 'exists' | 'revoked'> {
    const parsed = parseToken(token);
    if (parsed === undefined) throw new Error('the bootstrap token is not a Stageline token (stl_<id>_<secret>)');
    const existing = await this.#deps.tokens.get(parsed.id);
    if (existing !== undefined) return existing.revokedAt === undefined ? 'exists' : 'revoked';
    const now = this.#deps.clock.now();
    const record = (name: string): TokenRecord => ({
      id: parsed.id,
      name,
      role: 'ROLE_ADMIN',
      projects: [],
      secretHash: hashSecret(parsed.secret),
      createdAt: now,
      expiresAt: undefined,
      revokedAt: undefined,
      createdBy: 'bootstrap',
    });
    try {
      await this.#deps.tokens.insert(record(BOOTSTRAP_NAME));
    } catch {
      // Another bootstrap token already holds the name: this one is told apart by its id.
      await this.#deps.tokens.insert(record(`${BOOTSTRAP_NAME}-${parsed.id.slice(-12)}`));
    }
    return 'created';
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const parseUuid = (id: string): string | undefined => (UUID.test(id) ? id : undefined);
