// Stageline's own NATS server: its configuration and users (set-up), and provisioning (start-up).
//
//   node deploy/dev/nats.ts config      $STAGELINE_STATE/nats/users/<identity>.json (made once, 0600) and
//                                       $STAGELINE_STATE/nats/nats.conf (0600) for STAGELINE_BUS_PREFIX;
//                                       prints "changed" when the configuration changed
//   node deploy/dev/nats.ts provision   streams, durable consumers and key-value buckets, created or
//                                       updated as the `provision` identity on NATS_URL (default
//                                       nats://127.0.0.1:4223); idempotent
//
// STAGELINE_NATS_PORT (default 4223) is where the server listens; its store is $STAGELINE_STATE/nats/store.
// Provisioning reads the services' own WORKER_ACK_WAIT_MS, DEPLOY_SLOTS and BUILD_LOCK_TTL_MS, so the
// consumers it makes are the ones the services would.
import path from 'node:path';
import { busUserFile, createSubjects, ensureBusUsers, writeNatsServerConfig } from '@stageline/bus';
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
  else if (command === 'provision') await provision();
  else {
    console.error('usage: node deploy/dev/nats.ts config|provision');
    process.exit(2);
  }
} catch (e) {
  console.error(`nats: ${command}: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
