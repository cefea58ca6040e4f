// Provisioning of Stageline's bus: streams, durable consumers and key-value buckets, created or updated
// as the `provision` identity; idempotent. Used by deploy/dev/nats.ts (the one-machine stack) and, copied
// into the control image as /app/provision.ts, by the Kubernetes manifests' provisioning Job.
//
//   node provision.ts      NATS_URL, STAGELINE_NATS_CREDENTIALS (the provision user's file),
//                          STAGELINE_BUS_PREFIX (default stageline), and the services' own
//                          WORKER_ACK_WAIT_MS, DEPLOY_SLOTS and BUILD_LOCK_TTL_MS, so the consumers it
//                          makes are the ones the services would; STAGELINE_DEPLOY_HOSTS (each deploy
//                          host's consumer) and STAGELINE_STREAM_REPLICAS (3 on a cluster).
import { Bus, DEFAULT_PROVISION_SETTINGS, provisionBus, validateDeployHost } from '@stageline/bus';
import { createLogger } from '@stageline/log';

export interface ProvisionOptions {
  url: string;
  prefix: string;
  credentialsFile: string;
  env: Readonly<Record<string, string | undefined>>;
}

const positive = (env: ProvisionOptions['env'], name: string, fallback: number): number => {
  const value = env[name]?.trim();
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: expected a positive integer, got "${value}"`);
  return n;
};

/** `STAGELINE_DEPLOY_HOSTS`: comma-separated DNS labels; empty: no host-bound consumers. */
export function deployHosts(value: string | undefined): string[] {
  const list = (value ?? '')
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '');
  for (const h of list) validateDeployHost(h, 'STAGELINE_DEPLOY_HOSTS');
  return [...new Set(list)];
}

/** Provisions the bus; resolves to the one line of summary. */
export async function provision(options: ProvisionOptions): Promise<string> {
  const { env } = options;
  const settings = {
    workerAckWaitMs: positive(env, 'WORKER_ACK_WAIT_MS', DEFAULT_PROVISION_SETTINGS.workerAckWaitMs),
    deploySlots: positive(env, 'DEPLOY_SLOTS', DEFAULT_PROVISION_SETTINGS.deploySlots),
    buildLockTtlMs: positive(env, 'BUILD_LOCK_TTL_MS', DEFAULT_PROVISION_SETTINGS.buildLockTtlMs),
    // Each deploy host's consumer of the jobs bound to it (environments on the `local` runtime).
    deployHosts: deployHosts(env.STAGELINE_DEPLOY_HOSTS),
  };
  const log = createLogger({ service: 'provision', level: env.LOG_LEVEL ?? 'warn' });
  const bus = await Bus.connect({
    url: options.url,
    prefix: options.prefix,
    name: 'stageline-provision',
    log,
    credentialsFile: options.credentialsFile,
    // The one identity that creates and updates.
    provisioned: false,
  });
  try {
    const summary = await provisionBus(bus, settings);
    return `provisioned ${summary.streams.length} streams, ${summary.consumers.length} consumers, ${summary.buckets.length} buckets (prefix ${options.prefix})`;
  } finally {
    await bus.close();
  }
}

if (import.meta.main) {
  const env = process.env;
  try {
    const credentialsFile = env.STAGELINE_NATS_CREDENTIALS?.trim();
    if (!credentialsFile)
      throw new Error('STAGELINE_NATS_CREDENTIALS: the provision user’s credentials file is required');
    const url = env.NATS_URL?.trim();
    if (!url) throw new Error('NATS_URL: required (nats://host:port)');
    console.log(
      await provision({ url, prefix: env.STAGELINE_BUS_PREFIX?.trim() || 'stageline', credentialsFile, env }),
    );
  } catch (e) {
    console.error(`provision: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
}
