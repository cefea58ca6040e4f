// The build schema's record of git builds (table build) and of every cache key's inputs (cache_key).
import { type Database, newId } from '@stageline/db';
import type { KeyInput } from '../../domain/cache-key.ts';

export type BuildStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELED';

export interface BuildRecord {
  id: string;
  jobId: string;
  deploymentId: string;
  environmentId: string;
  serviceId: string;
  attempt: number;
  gitUrl: string;
  commit: string;
  cacheKey: string | null;
  image: string;
  cacheHit: boolean;
  status: BuildStatus;
  message: string;
  startedAt: Date;
  finishedAt: Date | null;
}

export interface CacheKeyRecord {
  key: string;
  repository: string;
  tag: string;
  inputs: KeyInput[];
  createdAt: Date;
}

interface BuildRow {
  id: string;
  job_id: string;
  deployment_id: string;
  environment_id: string;
  service_id: string;
  attempt: number;
  git_url: string;
  commit: string;
  cache_key: string | null;
  image: string;
  cache_hit: boolean;
  status: BuildStatus;
  message: string;
  started_at: Date | string;
  finished_at: Date | string | null;
}

function toRecord(r: BuildRow): BuildRecord {
  return {
    id: r.id,
    jobId: r.job_id,
    deploymentId: r.deployment_id,
    environmentId: r.environment_id,
    serviceId: r.service_id,
    attempt: r.attempt,
    gitUrl: r.git_url,
    commit: r.commit,
    cacheKey: r.cache_key,
    image: r.image,
    cacheHit: r.cache_hit,
    status: r.status,
    message: r.message,
    startedAt: new Date(r.started_at),
    finishedAt: r.finished_at === null ? null : new Date(r.finished_at),
  };
}

export class BuildStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** One statement under the database retry policy: every statement here is safe to run again. */
  #execute<T = Record<string, unknown>[]>(sql: string, params: unknown[] = []): Promise<T> {
    const what = `build store: ${sql.trim().split(/\s+/).slice(0, 3).join(' ')}`;
    return this.#db.retry(what, (em) => em.execute(sql, params) as Promise<T>);
  }

  async start(build: {
    jobId: string;
    deploymentId: string;
    environmentId: string;
    serviceId: string;
    attempt: number;
    gitUrl: string;
  }): Promise<string> {
    const id = newId();
    await this.#execute(
      `insert into build (id, job_id, deployment_id, environment_id, service_id, attempt, git_url, status)
         values (?, ?, ?, ?, ?, ?, ?, 'RUNNING')
         on conflict (id) do nothing`,
      [id, build.jobId, build.deploymentId, build.environmentId, build.serviceId, build.attempt, build.gitUrl],
    );
    return id;
  }

  /** Stores a key's inputs; the same key again changes nothing (its inputs are the same by definition). */
  async recordKey(entry: { key: string; repository: string; tag: string; inputs: KeyInput[] }): Promise<void> {
    await this.#execute(
      `insert into cache_key (key, repository, tag, inputs) values (?, ?, ?, ?::jsonb) on conflict (key) do nothing`,
      [entry.key, entry.repository, entry.tag, JSON.stringify(entry.inputs)],
    );
  }

  async keyed(id: string, commit: string, cacheKey: string): Promise<void> {
    await this.#execute('update build set commit = ?, cache_key = ? where id = ?', [commit, cacheKey, id]);
  }

  async committed(id: string, commit: string): Promise<void> {
    await this.#execute('update build set commit = ? where id = ?', [commit, id]);
  }

  async finish(
    id: string,
    outcome: { status: Exclude<BuildStatus, 'RUNNING'>; message: string; image?: string; cacheHit?: boolean },
  ): Promise<void> {
    await this.#execute(
      `update build set status = ?, message = ?, image = ?, cache_hit = ?, finished_at = now() where id = ?`,
      [outcome.status, outcome.message, outcome.image ?? '', outcome.cacheHit ?? false, id],
    );
  }

  async get(id: string): Promise<BuildRecord | undefined> {
    const rows = await this.#execute<BuildRow[]>('select * from build where id = ?', [id]);
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  /** The service's latest keyed build, in one deployment if given. */
  async latestFor(serviceId: string, deploymentId?: string): Promise<BuildRecord | undefined> {
    const rows = await this.#execute<BuildRow[]>(
      `select * from build where service_id = ? and cache_key is not null ${deploymentId === undefined ? '' : 'and deployment_id = ?'}
          order by started_at desc, id desc limit 1`,
      deploymentId === undefined ? [serviceId] : [serviceId, deploymentId],
    );
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  /**
   * The service's build an explanation compares with: its latest successful build of another run
   * started before `before` (a retry of the same run is not a "previous build").
   */
  async previousFor(serviceId: string, before: { id: string; deploymentId: string; startedAt: Date }) {
    const rows = await this.#execute<BuildRow[]>(
      `select * from build
        where service_id = ? and status = 'SUCCEEDED' and cache_key is not null
          and deployment_id <> ? and id <> ? and started_at <= ?
        order by started_at desc, id desc limit 1`,
      [serviceId, before.deploymentId, before.id, before.startedAt],
    );
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  async key(key: string): Promise<CacheKeyRecord | undefined> {
    const rows = await this.#execute<
      Array<{ key: string; repository: string; tag: string; inputs: KeyInput[] | string; created_at: Date | string }>
    >('select * from cache_key where key = ?', [key]);
    const r = rows[0];
    if (r === undefined) return undefined;
    return {
      key: r.key,
      repository: r.repository,
      tag: r.tag,
      inputs: typeof r.inputs === 'string' ? (JSON.parse(r.inputs) as KeyInput[]) : r.inputs,
      createdAt: new Date(r.created_at),
    };
  }
}
