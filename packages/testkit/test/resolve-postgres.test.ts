import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { POSTGRES_LOCAL_PORT, resolvePostgres } from '../src/index.ts';

async function serverVersion(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  await client.connect();
  try {
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    return rows[0]?.server_version ?? '';
  } finally {
    await client.end();
  }
}

describe('resolvePostgres', () => {
  it('takes DATABASE_URL from the environment before anything else', async () => {
    const url = 'postgres://someone@db.example.invalid:6543/app';
    const server = await resolvePostgres({ env: { DATABASE_URL: url } });
    expect(server).toMatchObject({ url, source: 'env' });
  });

  it('finds the server on the standard local port as source local', async () => {
    const server = await resolvePostgres({ strategy: 'local' });
    expect(server).toMatchObject({
      url: `postgres://postgres@127.0.0.1:${POSTGRES_LOCAL_PORT}/postgres`,
      source: 'local',
    });
    expect(await serverVersion(server.url)).toMatch(/^\d+/);
  });

  it('says why the container strategy is not available', async () => {
    await expect(resolvePostgres({ strategy: 'container' })).rejects.toThrow(/container: no local PostgreSQL image/);
  });

  it('runs a throwaway cluster with initdb/pg_ctl on a free port, and stop() ends it', async () => {
    const server = await resolvePostgres({ strategy: 'binary' });
    expect(server.source).toBe('binary');
    expect(server.url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
    expect(server.url).not.toContain(`:${POSTGRES_LOCAL_PORT}/`);
    expect(await serverVersion(server.url)).toMatch(/^\d+/);
    await server.stop();
    await expect(serverVersion(server.url)).rejects.toThrow(/ECONNREFUSED/);
  });
});
