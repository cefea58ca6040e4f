// Stageline's own NATS server: its configuration and users (set-up), and provisioning (start-up).
//
//   node deploy/dev/nats.ts config      $STAGELINE_STATE/nats/users/<identity>.json (made once, 0600) and
//                                       $STAGELINE_STATE/nats/nats.conf (0600) for STAGELINE_BUS_PREFIX;
//                                       prints "changed" when the configuration changed
//   node deploy/dev/nats.ts cluster     a three-node cluster's configurations, same users and permissions:
//                                       $STAGELINE_STATE/nats/cluster/n<i>/nats.conf (0600) for nodes n1-n3
//                                       at STAGELINE_NATS_CLUSTER_HOSTS (comma list; default three times
//                                       127.0.0.1), client ports STAGELINE_NATS_PORT + 0/1/2 (+0 everywhere
//                                       when the hosts differ), route ports those + 2000; routes authenticate
//                                       with $STAGELINE_STATE/nats/users/route.json. Clients then take
//                                       NATS_URL as the three URLs comma-separated and STAGELINE_STREAM_REPLICAS=3
//   node deploy/dev/nats.ts provision   streams, durable consumers and key-value buckets, created or
//                                       updated as the `provision` identity on NATS_URL (default
//                                       nats://127.0.0.1:4223); idempotent
//
// STAGELINE_NATS_PORT (default 4223) is where the server listens; its store is $STAGELINE_STATE/nats/store.
// Provisioning reads the services' own WORKER_ACK_WAIT_MS, DEPLOY_SLOTS and BUILD_LOCK_TTL_MS, so the
// consumers it makes are the ones the services would.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import {
  busUserFile,
  createSubjects,
  ensureBusUsers,
  ensureRouteUser,
  natsClusterConfigs,
  writeNatsServerConfig,
} from '@stageline/bus';
import { provision as provisionBus } from '../images/provision.ts';

const state = process.env.STAGELINE_STATE ?? path.resolve(import.meta.dirname, '../../.stageline');
const natsDir = path.join(state, 'nats');
const usersDir = process.env.STAGELINE_NATS_USERS ?? path.join(natsDir, 'users');
const prefix = process.env.STAGELINE_BUS_PREFIX?.trim() || 'stageline';

const number = (name: string, fallback: number): number => {
  const value = process.env[name]?.trim();
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: expected a positive integer, got "${value}"`);
  return n;
};

async function config(): Promise<void> {
  const users = await ensureBusUsers(usersDir);
  const changed = await writeNatsServerConfig(path.join(natsDir, 'nats.conf'), {
    subjects: createSubjects(prefix),
    users,
    host: '127.0.0.1',
    port: number('STAGELINE_NATS_PORT', 4223),
    storeDir: path.join(natsDir, 'store'),
    logFile: path.join(natsDir, 'nats-server.log'),
  });
  if (changed) console.log('changed');
}

async function cluster(): Promise<void> {
  const users = await ensureBusUsers(usersDir);
  const routeUser = await ensureRouteUser(usersDir);
  const hosts = (process.env.STAGELINE_NATS_CLUSTER_HOSTS?.trim() || '127.0.0.1,127.0.0.1,127.0.0.1')
    .split(',')
    .map((h) => h.trim());
  if (hosts.length !== 3 || hosts.some((h) => h === '')) {
    throw new Error('STAGELINE_NATS_CLUSTER_HOSTS: expected three comma-separated hosts');
  }
  const shared = new Set(hosts).size < hosts.length;
  const base = number('STAGELINE_NATS_PORT', 4223);
  const nodes = hosts.map((host, i) => {
    const dir = path.join(natsDir, 'cluster', `n${i + 1}`);
    const port = shared ? base + i : base;
    return {
      name: `n${i + 1}`,
      host,
      port,
      clusterPort: port + 2000,
      storeDir: path.join(dir, 'store'),
      logFile: path.join(dir, 'nats-server.log'),
    };
  });
  const configs = natsClusterConfigs({ subjects: createSubjects(prefix), users, nodes, routeUser });
  for (const [i, options] of configs.entries()) {
    const file = path.join(natsDir, 'cluster', `n${i + 1}`, 'nats.conf');
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    if (await writeNatsServerConfig(file, options)) console.log(`changed ${file}`);
  }
  console.log(`NATS_URL=${nodes.map((n) => `nats://${n.host}:${n.port}`).join(',')} STAGELINE_STREAM_REPLICAS=3`);
}

async function provision(): Promise<void> {
  const summary = await provisionBus({
    url: process.env.NATS_URL?.trim() || `nats://127.0.0.1:${number('STAGELINE_NATS_PORT', 4223)}`,
    prefix,
    credentialsFile: busUserFile(usersDir, 'provision'),
    env: process.env,
  });
  console.log(summary);
}

const command = process.argv[2];
try {
  if (command === 'config') await config();
  else if (command === 'cluster') await cluster();
  else if (command === 'provision') await provision();
  else {
    console.error('usage: node deploy/dev/nats.ts config|cluster|provision');
    process.exit(2);
  }
} catch (e) {
  console.error(`nats: ${command}: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
