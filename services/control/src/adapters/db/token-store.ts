import type { Database } from '@stageline/db';
import { isUniqueViolation } from '@stageline/db';
import { alreadyExists, notFound } from '@stageline/errors';
import type { Role, TokenRecord } from '../../domain/access.ts';

// API tokens in schema `control`, table `api_token`: the secret's hash only, never the secret.

interface Row {
  id: string;
  name: string;
  role: string;
  projects: string[];
  secret_hash: string;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  created_by: string;
}

const COLUMNS = 'id, name, role, projects, secret_hash, created_at, expires_at, revoked_at, created_by';

function toRecord(row: Row): TokenRecord {
  return {
    id: row.id,
    name: row.name,
    role: row.role as Role,
    projects: row.projects,
    secretHash: row.secret_hash,
    createdAt: new Date(row.created_at),
    expiresAt: row.expires_at === null ? undefined : new Date(row.expires_at),
    revokedAt: row.revoked_at === null ? undefined : new Date(row.revoked_at),
    createdBy: row.created_by,
  };
}

export class PgTokenStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** One statement under the database retry policy. */
  #execute<T = Record<string, unknown>[]>(sql: string, params: unknown[] = []): Promise<T> {
    const what = `token store: ${sql.trim().split(/\s+/).slice(0, 3).join(' ')}`;
    return this.#db.retry(what, (em) => em.execute(sql, params) as Promise<T>);
  }

  /** ALREADY_EXISTS when a token not revoked has the same name. */
  async insert(token: TokenRecord): Promise<void> {
    try {
      await this.#execute(
        `insert into api_token (${COLUMNS}) values (?, ?, ?, array(select jsonb_array_elements_text(?::jsonb)), ?, ?, ?, ?, ?)`,
        [
          token.id,
          token.name,
          token.role,
          JSON.stringify(token.projects),
          token.secretHash,
          token.createdAt,
          token.expiresAt ?? null,
          token.revokedAt ?? null,
          token.createdBy,
        ],
      );
    } catch (e) {
      // A retry after a commit whose answer was lost finds its own row: done.
      if (isUniqueViolation(e) && (await this.get(token.id)) !== undefined) return;
      if (isUniqueViolation(e))
        throw alreadyExists('name', `a token named ${JSON.stringify(token.name)} already exists`);
      throw e;
    }
  }

  async get(id: string): Promise<TokenRecord | undefined> {
    const rows = await this.#execute<Row[]>(`select ${COLUMNS} from api_token where id = ?`, [id]);
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  /** The live token with this name, if any (the bootstrap token is found by its name). */
  async findByName(name: string): Promise<TokenRecord | undefined> {
    const rows = await this.#execute<Row[]>(`select ${COLUMNS} from api_token where name = ? and revoked_at is null`, [
      name,
    ]);
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  /** Newest first. */
  async list(): Promise<TokenRecord[]> {
    const rows = await this.#execute<Row[]>(`select ${COLUMNS} from api_token order by created_at desc, id desc`);
    return rows.map(toRecord);
  }

  /** Sets revoked_at once; NOT_FOUND when absent. */
  async revoke(id: string, at: Date): Promise<TokenRecord> {
    await this.#execute('update api_token set revoked_at = coalesce(revoked_at, ?) where id = ?', [at, id]);
    const token = await this.get(id);
    if (token === undefined) throw notFound('token', id, 'id');
    return token;
  }
}
