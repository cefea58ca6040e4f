import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ensureLocalImage, POSTGRES_LOCAL_PORT, resolvePostgres } from '../src/index.ts';
import { which } from '../src/proc.ts';

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

  it('starts PostgreSQL with testcontainers from the image built out of the local installation', async () => {
    if (which('podman') === undefined && !process.env.DOCKER_HOST) {
      await expect(resolvePostgres({ strategy: 'container' })).rejects.toThrow(
        /Could not find a working container runtime strategy/,
      );
      return;
    }
    expect(await ensureLocalImage('postgres')).toMatch(/^localhost\/stageline-test\/postgres:[0-9a-f]{16}$/);
    const server = await resolvePostgres({ strategy: 'container' });
    try {
      expect(server.source).toBe('container');
      expect(server.url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
      expect(await serverVersion(server.url)).toMatch(/^\d+/);
      // The image carries zoneinfo: named time zones work, not only UTC.
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      const { rows } = await client.query<{ offset: string }>(
        "SELECT to_char(timestamptz '2024-01-15 12:00:00+00' AT TIME ZONE 'Europe/Paris', 'HH24') AS offset",
      );
      await client.end();
      expect(rows[0]?.offset).toBe('13');
    } finally {
      await server.stop();
    }
    await expect(serverVersion(server.url)).rejects.toThrow(/ECONNREFUSED|ECONNRESET|terminated|closed/);
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
