import { afterAll, beforeAll } from 'vitest';
import { dropBusPrefix, type FreshDatabase, freshBusPrefix, freshDatabase } from './isolation.ts';
import { resolveNats } from './nats.ts';
import { resolvePostgres } from './postgres.ts';

export interface IsolatedEnvironment {
  /** URL of the resolved NATS server (shared with other test files; isolation is by prefix). */
  readonly natsUrl: string;
  /** URL of this file's own fresh database. */
  readonly databaseUrl: string;
  /** This file's STAGELINE_BUS_PREFIX. */
  readonly busPrefix: string;
  /** NATS_URL, DATABASE_URL and STAGELINE_BUS_PREFIX, ready to hand to a service's config or child process. */
  readonly env: Readonly<Record<'NATS_URL' | 'DATABASE_URL' | 'STAGELINE_BUS_PREFIX', string>>;
}

interface State {
  natsUrl: string;
  database: FreshDatabase;
  busPrefix: string;
}

/**
 * Call at the top of a test file (or describe block). beforeAll resolves NATS and PostgreSQL and
 * makes a fresh database and bus prefix; afterAll deletes the prefix's streams and drops the database.
 * The returned getters throw when read before beforeAll has run.
 */
export function useIsolatedEnvironment(): IsolatedEnvironment {
  let state: State | undefined;
  const current = (): State => {
    if (state === undefined) throw new Error('useIsolatedEnvironment() values are available from beforeAll on');
    return state;
  };
  beforeAll(async () => {
    const [nats] = await Promise.all([resolveNats(), resolvePostgres()]);
    state = { natsUrl: nats.url, database: await freshDatabase(), busPrefix: freshBusPrefix() };
  });
  afterAll(async () => {
    if (state === undefined) return;
    const { natsUrl, database, busPrefix } = state;
    state = undefined;
    try {
      await dropBusPrefix(natsUrl, busPrefix);
    } finally {
      await database.drop();
    }
  });
  return {
    get natsUrl() {
      return current().natsUrl;
    },
    get databaseUrl() {
      return current().database.url;
    },
    get busPrefix() {
      return current().busPrefix;
    },
    get env() {
      const { natsUrl, database, busPrefix } = current();
      return { NATS_URL: natsUrl, DATABASE_URL: database.url, STAGELINE_BUS_PREFIX: busPrefix };
    },
  };
}
