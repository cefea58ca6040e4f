// The floor the figures are judged against, measured on this machine in the same run: one PostgreSQL
// commit (a one-row insert, its own transaction, durable) and one JetStream publish (its ack awaited),
// each repeated in a row. A stage transition cannot take less than one of each; a service-deploy needs
// at least one commit and two publishes (its job and its event), so these also bound throughput.
// The CPU each takes (the client, this process, plus the server: the connection's PostgreSQL backend, the
// floor's own nats-server) is the floor of CPU per service-deploy.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { freshDatabase } from '@stageline/testkit';
import pg from 'pg';
import { cpuSeconds } from './cpu.ts';

export interface Floor {
  commitMs: number;
  commitsPerSecond: number;
  publishMs: number;
  publishesPerSecond: number;
  /** One commit and one publish: what a stage transition needs at least. */
  transitionMs: number;
  /** CPU ms of one commit: this client plus its PostgreSQL backend (WAL writer and checkpointer not counted). */
  commitCpuMs: number;
  /** CPU ms of one publish: this client plus the nats-server (when its pid is known, else the client alone). */
  publishCpuMs: number;
  /** One commit and two publishes (a job and an event): the least CPU a service-deploy can take. */
  serviceDeployCpuMs: number;
}

/** CPU seconds of this process (user + system). */
const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

export async function measureFloor(natsUrl: string, natsPid?: number, n = 300): Promise<Floor> {
  const database = await freshDatabase();
  let commitMs: number;
  let commitCpuMs: number;
  try {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      await client.query('create table floor (id serial primary key, at timestamptz not null default now())');
      await client.query('insert into floor default values');
      const backend = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const cpu0 = selfCpu() + (cpuSeconds(backend) ?? 0);
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await client.query('insert into floor default values');
      commitMs = (performance.now() - t0) / n;
      commitCpuMs = ((selfCpu() + (cpuSeconds(backend) ?? 0) - cpu0) * 1000) / n;
    } finally {
      await client.end();
    }
  } finally {
    await database.drop().catch(() => undefined);
  }
  const nc = await connect({ servers: natsUrl, name: 'stageline-bench-floor' });
  let publishMs: number;
  let publishCpuMs: number;
  try {
    const name = `BENCH_FLOOR_${process.pid}_${Date.now()}`;
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name, subjects: [`${name}.x`] });
    try {
      const js = jetstream(nc);
      const data = new Uint8Array(256);
      await js.publish(`${name}.x`, data);
      const server = () => (natsPid === undefined ? 0 : (cpuSeconds(natsPid) ?? 0));
      const cpu0 = selfCpu() + server();
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await js.publish(`${name}.x`, data);
      publishMs = (performance.now() - t0) / n;
      publishCpuMs = ((selfCpu() + server() - cpu0) * 1000) / n;
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
    commitCpuMs,
    publishCpuMs,
    serviceDeployCpuMs: commitCpuMs + 2 * publishCpuMs,
  };
}

/** The line every scenario prints about what was on: the default stack's security, or not. */
export const SECURITY_NOTE =
  'security: gRPC TLS on, tokens on (the admin token), secret values sealed (always); ' +
  "the bus anonymous without TLS (the benchmark's own nats-server, as the tests' servers)";
