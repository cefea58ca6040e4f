// The floor the figures are judged against, measured on this machine in the same run: one PostgreSQL
// commit (a one-row insert, its own transaction, durable) and one JetStream publish (its ack awaited),
// each repeated in a row. A stage transition cannot take less than one of each; a service-deploy needs
// at least one commit and two publishes (its job and its event), so these also bound throughput.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { freshDatabase } from '@stageline/testkit';
import pg from 'pg';

export interface Floor {
  commitMs: number;
  commitsPerSecond: number;
  publishMs: number;
  publishesPerSecond: number;
  /** One commit and one publish: what a stage transition needs at least. */
  transitionMs: number;
}

export async function measureFloor(natsUrl: string, n = 300): Promise<Floor> {
  const database = await freshDatabase();
  let commitMs: number;
  try {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      await client.query('create table floor (id serial primary key, at timestamptz not null default now())');
      await client.query('insert into floor default values');
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await client.query('insert into floor default values');
      commitMs = (performance.now() - t0) / n;
    } finally {
      await client.end();
    }
  } finally {
    await database.drop().catch(() => undefined);
  }
  const nc = await connect({ servers: natsUrl, name: 'stageline-bench-floor' });
  let publishMs: number;
  try {
    const name = `BENCH_FLOOR_${process.pid}_${Date.now()}`;
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name, subjects: [`${name}.x`] });
    try {
      const js = jetstream(nc);
      const data = new Uint8Array(256);
      await js.publish(`${name}.x`, data);
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await js.publish(`${name}.x`, data);
      publishMs = (performance.now() - t0) / n;
    } finally {
      await jsm.streams.delete(name).catch(() => undefined);
    }
  } finally {
    await nc.close();
  }
  return {
    commitMs,
    commitsPerSecond: 1000 / commitMs,
    publishMs,
    publishesPerSecond: 1000 / publishMs,
    transitionMs: commitMs + publishMs,
  };
}

/** The line every scenario prints about what was on: the default stack's security, or not. */
export const SECURITY_NOTE =
  'security: gRPC TLS on, tokens on (the admin token), secret values sealed (always); ' +
  "the bus anonymous without TLS (the benchmark's own nats-server, as the tests' servers)";
