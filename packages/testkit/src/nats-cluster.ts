// A three-node JetStream cluster of the test's own, secured like the dev stack (the same generator:
// one user per identity, routes with their own password), each node optionally started through a
// command prefix (`ip netns exec <ns>`: a node per simulated host). Provisioned with R3 streams and
// buckets as the provision identity.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  Bus,
  type BusCredentials,
  type BusIdentity,
  busUserFile,
  createSubjects,
  ensureBusUsers,
  ensureRouteUser,
  natsClusterConfigs,
  type ProvisionSettings,
  provisionBus,
  writeNatsServerConfig,
} from '@stageline/bus';
import { createLogger } from '@stageline/log';
import { track } from './cleanup.ts';
import { probeTcp, sleep, which } from './proc.ts';

export interface NatsClusterNodeSpec {
  /** Address the node listens on, and clients and the other nodes reach it at. */
  host: string;
  port: number;
  clusterPort: number;
  /** Argv run before `nats-server …` (e.g. `['ip', 'netns', 'exec', 'h1']`); default none. */
  prefix?: readonly string[];
}

export interface NatsClusterOptions {
  prefix: string;
  nodes: readonly NatsClusterNodeSpec[];
  /** Replicas of streams and buckets (default: the number of nodes). */
  replicas?: number;
  provision?: Partial<ProvisionSettings>;
}

export interface SecuredNatsCluster {
  /** Every node's URL, comma-separated: what `NATS_URL` takes. */
  url: string;
  urls: string[];
  prefix: string;
  replicas: number;
  credentialsFile(identity: BusIdentity): string;
  credentials(identity: BusIdentity): BusCredentials;
  env(identity: BusIdentity): Record<'NATS_URL' | 'STAGELINE_NATS_CREDENTIALS' | 'STAGELINE_STREAM_REPLICAS', string>;
  /** Kill one node (SIGKILL) / start it again on its own store. */
  kill(index: number): Promise<void>;
  start(index: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startSecuredNatsCluster(options: NatsClusterOptions): Promise<SecuredNatsCluster> {
  const binary = which('nats-server', process.env, ['/usr/sbin', '/usr/local/sbin']);
  if (binary === undefined) throw new Error('nats-server is not on PATH (bash deploy/dev/setup.sh installs it)');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stageline-nats-cluster-'));
  const usersDir = path.join(dir, 'users');
  const users = await ensureBusUsers(usersDir);
  const routeUser = await ensureRouteUser(usersDir);
  const nodeDir = (i: number) => path.join(dir, `n${i + 1}`);
  const configs = natsClusterConfigs({
    subjects: createSubjects(options.prefix),
    users,
    routeUser,
    nodes: options.nodes.map((n, i) => ({
      name: `n${i + 1}`,
      host: n.host,
      port: n.port,
      clusterPort: n.clusterPort,
      storeDir: path.join(nodeDir(i), 'store'),
    })),
  });
  for (const [i, config] of configs.entries()) {
    await mkdir(nodeDir(i), { recursive: true, mode: 0o700 });
    await writeNatsServerConfig(path.join(nodeDir(i), 'nats.conf'), config);
  }
  const children: Array<ChildProcess | undefined> = options.nodes.map(() => undefined);
  const forgets: Array<() => void> = options.nodes.map(() => () => {});

  const start = async (i: number) => {
    const node = options.nodes[i];
    if (node === undefined) throw new Error(`no node ${i}`);
    const log = await open(path.join(nodeDir(i), 'nats-server.log'), 'a');
    const argv = [...(node.prefix ?? []), binary, '-c', path.join(nodeDir(i), 'nats.conf')];
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', log.fd, log.fd] });
    await log.close();
    child.unref();
    children[i] = child;
    forgets[i] = child.pid === undefined ? () => {} : track({ kind: 'process', pid: child.pid, dir });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) break;
      if ((await probeTcp(node.host, node.port, 500))?.startsWith('INFO ')) return;
      await sleep(50);
    }
    const output = await readFile(path.join(nodeDir(i), 'nats-server.log'), 'utf8').catch(() => '');
    throw new Error(`cluster node n${i + 1} did not start: ${output.trim().split('\n').slice(-5).join('\n')}`);
  };
  const kill = async (i: number) => {
    const child = children[i];
    children[i] = undefined;
    forgets[i]?.();
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      await Promise.all(options.nodes.map((_, i) => kill(i)));
      await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };

  const urls = options.nodes.map((n) => `nats://${n.host}:${n.port}`);
  const url = urls.join(',');
  const replicas = options.replicas ?? options.nodes.length;
  const credentialsFile = (identity: BusIdentity) => busUserFile(usersDir, identity);
  try {
    await Promise.all(options.nodes.map((_, i) => start(i)));
    // JetStream answers once the nodes have elected a meta leader: provisioning retries until then.
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        const bus = await Bus.connect({
          url,
          prefix: options.prefix,
          name: 'testkit-provision',
          log: createLogger({ service: 'testkit', level: 'silent' }),
          credentialsFile: credentialsFile('provision'),
          provisioned: false,
          streamLimits: { replicas },
        });
        try {
          await provisionBus(bus, options.provision ?? {});
        } finally {
          await bus.close();
        }
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(500);
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    url,
    urls,
    prefix: options.prefix,
    replicas,
    credentialsFile,
    credentials: (identity) => users[identity],
    env: (identity) => ({
      NATS_URL: url,
      STAGELINE_NATS_CREDENTIALS: credentialsFile(identity),
      STAGELINE_STREAM_REPLICAS: String(replicas),
    }),
    kill,
    start,
    stop,
  };
}
