import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { type IsolatedEnvironment, useIsolatedEnvironment } from '../src/index.ts';

const seen: { databaseUrl?: string; natsUrl?: string; stream?: string } = {};

async function streamExists(natsUrl: string, stream: string): Promise<boolean> {
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    for await (const name of jsm.streams.names()) if (name === stream) return true;
    return false;
  } finally {
    await nc.close();
  }
}

const outer: { environment?: IsolatedEnvironment } = {};

describe('inside an isolated environment', () => {
  const environment = useIsolatedEnvironment();
  outer.environment = environment;

  it('has its own database, a bus prefix and the NATS URL', async () => {
    expect(environment.busPrefix).toMatch(/^t_[0-9a-f]{12}$/);
    expect(environment.env).toEqual({
      NATS_URL: environment.natsUrl,
      DATABASE_URL: environment.databaseUrl,
      STAGELINE_BUS_PREFIX: environment.busPrefix,
    });
    const client = new pg.Client({ connectionString: environment.databaseUrl });
    await client.connect();
    const { rows } = await client.query<{ db: string }>('SELECT current_database() AS db');
    await client.end();
    expect(rows[0]?.db).toMatch(/^stageline_t_[0-9a-f]{12}$/);

    // What a service would create under the prefix, for afterAll to clean up.
    const stream = `${environment.busPrefix.toUpperCase()}_REQUESTS`;
    const nc = await connect({ servers: environment.natsUrl });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: stream, subjects: [`${environment.busPrefix}.requests.>`] });
    await nc.close();
    Object.assign(seen, { databaseUrl: environment.databaseUrl, natsUrl: environment.natsUrl, stream });
  });
});

describe('after the isolated environment', () => {
  it('dropped the database and the prefix streams', async () => {
    const { databaseUrl, natsUrl, stream } = seen;
    if (databaseUrl === undefined || natsUrl === undefined || stream === undefined) {
      throw new Error('the first block did not run');
    }
    const client = new pg.Client({ connectionString: databaseUrl });
    await expect(client.connect()).rejects.toThrow(/does not exist/);
    expect(await streamExists(natsUrl, stream)).toBe(false);
  });

  it('no longer hands out the values it cleaned up', () => {
    expect(() => outer.environment?.natsUrl).toThrow(/available from beforeAll on/);
  });
});
