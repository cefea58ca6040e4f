import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { DomainError } from '@stageline/errors';
import { afterAll, describe, expect, it } from 'vitest';
import { Bus, bucketNames, durableConsumers, PROVISION_HINT, provisionBus } from '../src/index.ts';
import { deletePrefixStreams, eventually, NATS_URL, randomPrefix, silentLog } from './support.ts';

// Provisioning apart from running, on the anonymous test server: what `provision` makes, and what a
// provisioned bus (a service with credentials) does without it. The secured server: test/e2e/bus-auth.test.ts.
const prefix = randomPrefix();
const opened: Bus[] = [];

async function open(provisioned: boolean): Promise<Bus> {
  const bus = await Bus.connect({ url: NATS_URL, prefix, name: 'provision-test', log: silentLog, provisioned });
  opened.push(bus);
  return bus;
}

afterAll(async () => {
  await Promise.all(opened.map((b) => b.close()));
  await deletePrefixStreams(prefix);
  // Buckets are streams named KV_<bucket>.
  const nc = await connect({ servers: NATS_URL });
  const jsm = await jetstreamManager(nc);
  const names = Object.values(bucketNames(opened[0]!.subjects)).map((b) => `KV_${b}`);
  await Promise.all(names.map((n) => jsm.streams.delete(n).catch(() => false)));
  await nc.close();
});

describe('provisioning', () => {
  it('a provisioned bus creates nothing: missing streams and consumers stop it, naming the step', async () => {
    const service = await open(true);
    const missing = await service.ensureStreams().catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(DomainError);
    expect((missing as DomainError).code).toBe('FAILED_PRECONDITION');
    expect((missing as DomainError).message).toContain(PROVISION_HINT);
    const consumer = await service
      .consume({ ...durableConsumers(service.subjects)['planner-requests'], handler: () => undefined })
      .catch((e: unknown) => e);
    expect((consumer as DomainError).code).toBe('FAILED_PRECONDITION');
  });

  it('makes every stream, durable and bucket, idempotently; services then only look them up', async () => {
    const admin = await open(false);
    const first = await provisionBus(admin, { deploySlots: 3 });
    const again = await provisionBus(admin, { deploySlots: 3 });
    expect(again).toEqual(first);
    expect(first.streams).toHaveLength(7);
    expect(first.consumers.sort()).toEqual(
      [
        'build-workers',
        'control-runs',
        'deploy-workers',
        'planner-environments',
        'planner-job-dead-letters',
        'planner-requests',
        'planner-results',
      ]
        .map((d) => admin.subjects.consumerName(d))
        .sort(),
    );
    expect(first.buckets).toEqual(Object.values(bucketNames(admin.subjects)));

    const service = await open(true);
    await service.ensureStreams();
    const deploy = durableConsumers(service.subjects, { deploySlots: 3 })['deploy-workers'];
    const wanted = await service.ensureConsumer(deploy);
    expect(wanted.config.max_ack_pending).toBe(3 * 16);
    // Different settings are not applied by a service (it has no right to): used as provisioned.
    const c = await service.consume({ ...deploy, slots: 5, handler: () => undefined });
    await c.stop();
    const info = await admin.jsm.consumers.info(service.subjects.streams.deployJobs, c.consumer);
    expect(info.config.max_ack_pending).toBe(3 * 16);
  });

  it('after the NATS store was lost, provisioning again brings a provisioned service back: its loop resumes', async () => {
    const admin = await open(false);
    await provisionBus(admin);
    const service = await open(true);
    const seen: string[] = [];
    const requests = await service.consume({
      ...durableConsumers(service.subjects)['planner-requests'],
      handler: (m) => {
        seen.push(new TextDecoder().decode(m.data));
      },
    });
    try {
      const subject = service.subjects.requests('env-1');
      await admin.publish(subject, new TextEncoder().encode('before'));
      await eventually(() => seen.includes('before'), 'the request before the loss');
      // Every stream (and so every consumer) of the prefix is gone, as with a lost store.
      await deletePrefixStreams(prefix);
      await provisionBus(admin);
      await admin.publish(subject, new TextEncoder().encode('after'));
      await eventually(() => seen.includes('after'), 'the request after the rebuild', 60_000);
      expect(seen).toEqual(['before', 'after']);
    } finally {
      await requests.stop();
    }
  });
});
