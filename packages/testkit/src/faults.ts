// Servers of a test's own, for fault injection: a PostgreSQL cluster and a NATS server that can be
// stopped and started again on the same port with their data. Never the machine's shared servers
// (5432, 4222): other tests run against those.
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFile, chown, mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { track } from './cleanup.ts';
import { findPostgresBin } from './postgres-bin.ts';
import { freePort, probeTcp, run, sleep, which } from './proc.ts';

export interface FaultServer {
  /** The client URL; it stays the same across stop/start. */
  readonly url: string;
  readonly port: number;
  /** Stops the server abruptly (PostgreSQL: immediate shutdown; NATS: SIGKILL). */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data. */
  start(): Promise<void>;
  /** Stops it for good and removes its files. */
  destroy(): Promise<void>;
}

/** A NATS server whose store can be lost. */
export interface FaultNats extends FaultServer {
  /** The NATS host lost its disk: kill -9, delete the JetStream store, start again empty on the same port. */
  loseStore(): Promise<void>;
}

async function postgresAccount(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = await readFile('/etc/passwd', 'utf8');
  for (const line of passwd.split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === 'postgres' && uid !== undefined && gid !== undefined) return { uid: Number(uid), gid: Number(gid) };
  }
  throw new Error('running as root and there is no postgres user to run the server as');
}

export interface OwnPostgresOptions {
  /**
   * Also listen on these addresses, and let clients of `subnet` in (trust, like the socket and loopback
   * of this throwaway cluster): the multi-host scenario's network namespaces. Default: 127.0.0.1 only.
   */
  listen?: { addresses: readonly string[]; subnet: string };
}

/** A throwaway PostgreSQL cluster (initdb/pg_ctl) on a free port, which a test may stop and start. */
export async function startOwnPostgres(own: OwnPostgresOptions = {}): Promise<FaultServer> {
  const bin = await findPostgresBin();
  if (bin === undefined) throw new Error('initdb/pg_ctl not found in /usr/lib/postgresql/*/bin or on PATH');
  const account = await postgresAccount();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stageline-fault-pg-'));
  if (account !== undefined) await chown(dir, account.uid, account.gid);
  const data = path.join(dir, 'data');
  const logPath = path.join(dir, 'postgres.log');
  const options = { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC' }, cwd: dir, ...account };
  const pgCtl = path.join(bin, 'pg_ctl');
  await run(
    path.join(bin, 'initdb'),
    ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'],
    options,
  );
  const port = await freePort();
  const listen = ['127.0.0.1', ...(own.listen?.addresses ?? [])];
  for (const a of listen) if (!/^[0-9.]+$/.test(a)) throw new Error(`listen address ${a}: an IPv4 address`);
  if (own.listen !== undefined) {
    if (!/^[0-9.]+\/\d{1,2}$/.test(own.listen.subnet)) throw new Error(`subnet ${own.listen.subnet}: a.b.c.d/n`);
    await appendFile(path.join(data, 'pg_hba.conf'), `host all all ${own.listen.subnet} trust\n`);
  }
  const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=${listen.join(',')} -c fsync=off -c full_page_writes=off`;
  // Commits reach the WAL before they return (no synchronous_commit=off): an immediate stop loses nothing.
  const forget = track({ kind: 'postgres', pgCtl, data, dir, ...account });
  const start = async () => {
    try {
      await run(pgCtl, ['-D', data, '-l', logPath, '-w', '-t', '30', '-o', serverOptions, 'start'], options);
    } catch (e) {
      const log = await readFile(logPath, 'utf8').catch(() => '');
      throw new Error(`own PostgreSQL on port ${port} did not start: ${log.trim().split('\n').slice(-5).join('\n')}`, {
        cause: e,
      });
    }
  };
  const stop = async () => {
    await run(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop'], options).catch(() => undefined);
  };
  await start();
  let destroyed: Promise<void> | undefined;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    start,
    stop,
    destroy: () => {
      destroyed ??= (async () => {
        forget();
        await stop();
        await rm(dir, { recursive: true, force: true });
      })();
      return destroyed;
    },
  };
}

/** A nats-server with JetStream on a free port and a store of its own, which a test may kill and start. */
export async function startOwnNats(): Promise<FaultNats> {
  const binary = which('nats-server', process.env, ['/usr/sbin', '/usr/local/sbin']);
  if (binary === undefined) throw new Error('nats-server is not on PATH');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stageline-fault-nats-'));
  const store = path.join(dir, 'jetstream');
  await mkdir(store, { recursive: true });
  const port = await freePort();
  let child: ChildProcess | undefined;
  let forget: () => void = () => {};
  const start = async () => {
    const log = await open(path.join(dir, 'nats-server.log'), 'a');
    const started = spawn(binary, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', store], {
      stdio: ['ignore', log.fd, log.fd],
    });
    await log.close();
    started.unref();
    child = started;
    forget = started.pid === undefined ? () => {} : track({ kind: 'process', pid: started.pid, dir });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (started.exitCode !== null) break;
      const greeting = await probeTcp('127.0.0.1', port, 500);
      if (greeting?.startsWith('INFO ')) return;
      await sleep(50);
    }
    const output = await readFile(path.join(dir, 'nats-server.log'), 'utf8').catch(() => '');
    throw new Error(`own nats-server on port ${port} did not start: ${output.trim().split('\n').slice(-5).join('\n')}`);
  };
  const stop = async () => {
    const running = child;
    child = undefined;
    forget();
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  };
  await start();
  let destroyed: Promise<void> | undefined;
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    start,
    stop,
    loseStore: async () => {
      await stop();
      await rm(store, { recursive: true, force: true });
      await mkdir(store, { recursive: true });
      await start();
    },
    destroy: () => {
      destroyed ??= (async () => {
        await stop();
        await rm(dir, { recursive: true, force: true });
      })();
      return destroyed;
    },
  };
}
