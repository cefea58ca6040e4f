import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { track } from './cleanup.ts';
import { startContainer } from './containers.ts';
import { findPostgresBin } from './postgres-bin.ts';
import { errorMessage, freePort, run } from './proc.ts';
import { external, memoized, type ResolvedServer, type ResolveOptions, resolveWith, type Strategy } from './resolve.ts';

export const POSTGRES_LOCAL_PORT = 5432;
const LOCAL_URL = `postgres://postgres@127.0.0.1:${POSTGRES_LOCAL_PORT}/postgres`;

/** Connects and runs `SELECT 1`; throws the driver's reason when the server is not usable. */
export async function checkPostgres(url: string, timeoutMs = 2_000): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } finally {
    await client.end().catch(() => undefined);
  }
}

const fromEnv: Strategy = async (env) => {
  if (!env.DATABASE_URL) throw new Error('DATABASE_URL is not set');
  return external(env.DATABASE_URL, 'env');
};

const fromLocalPort: Strategy = async () => {
  try {
    await checkPostgres(LOCAL_URL);
  } catch (error) {
    throw new Error(`127.0.0.1:${POSTGRES_LOCAL_PORT}: ${errorMessage(error)}`);
  }
  return external(LOCAL_URL, 'local');
};

const fromContainer: Strategy = async () => {
  const container = await startContainer({
    image: 'postgres',
    port: POSTGRES_LOCAL_PORT,
    readyLog: /database system is ready to accept connections/,
  });
  return {
    url: `postgres://postgres@${container.host}:${container.port}/postgres`,
    source: 'container',
    stop: container.stop,
  };
};

interface Account {
  uid: number;
  gid: number;
}

/** PostgreSQL refuses to run as root: as root, the server runs as the `postgres` system user. */
async function serverAccount(): Promise<Account | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = await readFile('/etc/passwd', 'utf8');
  for (const line of passwd.split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === 'postgres' && uid !== undefined && gid !== undefined) {
      return { uid: Number.parseInt(uid, 10), gid: Number.parseInt(gid, 10) };
    }
  }
  throw new Error('running as root and there is no postgres user to run the server as');
}

async function startBinaryOnce(bin: string, account: Account | undefined): Promise<ResolvedServer | 'port-taken'> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stageline-pg-'));
  if (account !== undefined) await chown(dir, account.uid, account.gid);
  const data = path.join(dir, 'data');
  const logPath = path.join(dir, 'postgres.log');
  const options = {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC' },
    cwd: dir,
    ...(account === undefined ? {} : account),
  };
  const pgCtl = path.join(bin, 'pg_ctl');
  const stopArgs = ['-D', data, '-m', 'immediate', '-w', 'stop'];
  let forget: () => void = () => {};
  const cleanUp = async (running: boolean): Promise<void> => {
    forget();
    if (running) await run(pgCtl, stopArgs, options).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // A throwaway cluster: trust auth, no fsync; it lives as long as the test run.
    await run(
      path.join(bin, 'initdb'),
      ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'],
      options,
    );
  } catch (error) {
    await cleanUp(false);
    throw error;
  }
  const port = await freePort();
  const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off`;
  forget = track({ kind: 'postgres', pgCtl, data, dir, ...(account ?? {}) });
  try {
    await run(pgCtl, ['-D', data, '-l', logPath, '-w', '-t', '30', '-o', serverOptions, 'start'], options);
  } catch (error) {
    const log = await readFile(logPath, 'utf8').catch(() => '');
    await cleanUp(true);
    if (/could not bind|address already in use/i.test(log)) return 'port-taken';
    throw new Error(`${errorMessage(error)}: ${log.trim()}`);
  }
  let stopped: Promise<void> | undefined;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    source: 'binary',
    stop: () => {
      stopped ??= cleanUp(true);
      return stopped;
    },
  };
}

const fromBinary: Strategy = async (env) => {
  const bin = await findPostgresBin(env);
  if (bin === undefined) throw new Error('initdb/pg_ctl not found in /usr/lib/postgresql/*/bin or on PATH');
  const account = await serverAccount();
  for (let attempt = 0; attempt < 3; attempt++) {
    const server = await startBinaryOnce(bin, account);
    if (server !== 'port-taken') return server;
  }
  throw new Error('postgres lost the race for a free port three times');
};

/**
 * A PostgreSQL server, found in RESOLUTION_ORDER: DATABASE_URL → 127.0.0.1:5432 as user postgres
 * (if a connection and `SELECT 1` work) → a testcontainers container from the image the kit builds out
 * of this machine's PostgreSQL installation → a throwaway cluster from initdb/pg_ctl on a free port in
 * a temp dir. Except for 'env', the URL names the `postgres` database as user postgres (trust auth);
 * use freshDatabase() for a database of your own. Memoized per process.
 */
export const resolvePostgres: (options?: ResolveOptions) => Promise<ResolvedServer> = memoized((options) =>
  resolveWith(
    'PostgreSQL',
    { env: fromEnv, local: fromLocalPort, container: fromContainer, binary: fromBinary },
    options,
  ),
);
