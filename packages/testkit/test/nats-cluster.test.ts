// The cluster configuration end to end: three nats-servers from the generator, R3 streams and buckets
// provisioned through a NATS_URL list, the services' users and permissions on every node, and a bus that
// keeps publishing while the node it was connected to is killed.
import { Bus, bucketNames, createSubjects, natsClusterConfigs, natsServerConfig } from '@stageline/bus';
import { createLogger } from '@stageline/log';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type SecuredNatsCluster, startSecuredNatsCluster } from '../src/index.ts';

const log = createLogger({ service: 'cluster-test', level: 'silent' });
const prefix = `cl${Math.random().toString(36).slice(2, 8)}`;
let cluster: SecuredNatsCluster;

beforeAll(async () => {
  const nodes = [];
  for (let i = 0; i < 3; i++) nodes.push({ host: '127.0.0.1', port: await freePort(), clusterPort: await freePort() });
  cluster = await startSecuredNatsCluster({ prefix, nodes });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('a three-node cluster', () => {
  it('generates one configuration per node: same users and permissions, routes to the two others with a password', () => {
    const subjects = createSubjects('gen');
    const users = { planner: { user: 'planner', password: 'p' }, deploy: { user: 'deploy', password: 'd' } };
    const nodes = [1, 2, 3].map((i) => ({
      name: `n${i}`,
      host: `10.9.0.${i}`,
      port: 4222,
      clusterPort: 6222,
      storeDir: `/s/${i}`,
    }));
    const configs = natsClusterConfigs({ subjects, users, nodes, routeUser: { user: 'route', password: 'r/+' } });
    expect(configs.map((c) => c.cluster?.routes)).toEqual([
      ['nats-route://route:r%2F%2B@10.9.0.2:6222', 'nats-route://route:r%2F%2B@10.9.0.3:6222'],
      ['nats-route://route:r%2F%2B@10.9.0.1:6222', 'nats-route://route:r%2F%2B@10.9.0.3:6222'],
      ['nats-route://route:r%2F%2B@10.9.0.1:6222', 'nats-route://route:r%2F%2B@10.9.0.2:6222'],
    ]);
    const texts = configs.map((c) => natsServerConfig(c));
    const single = natsServerConfig({ subjects, users, host: '10.9.0.1', port: 4222, storeDir: '/s/1' });
    const accounts = (t: string) => t.slice(t.indexOf('accounts:'), t.indexOf('\ncluster:'));
    for (const text of texts) {
      expect(accounts(text)).toBe(single.slice(single.indexOf('accounts:')).trimEnd());
      expect(text).toContain('authorization: {');
    }
    expect(new Set(configs.map((c) => c.serverName)).size).toBe(3);
    expect(() => natsClusterConfigs({ subjects, users, nodes: nodes.slice(0, 1), routeUser: users.planner })).toThrow(
      /at least two/,
    );
  });

  it('provisions every stream and bucket with three replicas, reached through a NATS_URL list', async () => {
    const bus = await Bus.connect({
      url: cluster.url,
      prefix,
      name: 'cluster-check',
      log,
      credentialsFile: cluster.credentialsFile('planner'),
    });
    try {
      const streams = await bus.ensureStreams();
      for (const info of Object.values(streams)) {
        expect(info.config.num_replicas).toBe(3);
        expect((info.cluster?.replicas ?? []).length).toBe(2);
      }
    } finally {
      await bus.close();
    }
    const provision = await Bus.connect({
      url: cluster.url,
      prefix,
      name: 'cluster-kv',
      log,
      credentialsFile: cluster.credentialsFile('provision'),
      provisioned: false,
    });
    try {
      for (const name of Object.values(bucketNames(createSubjects(prefix)))) {
        expect((await provision.jsm.streams.info(`KV_${name}`)).config.num_replicas).toBe(3);
      }
    } finally {
      await provision.close();
    }
  });

  it('refuses a client without a user on every node', async () => {
    for (const url of cluster.urls) {
      await expect(Bus.connect({ url, prefix, name: 'anonymous', log })).rejects.toThrow(
        /Authorization|authorization|auth/i,
      );
    }
  });

  it('takes publishes, in sequence, on another node when the node a service was connected to dies', async () => {
    const control = await Bus.connect({
      url: cluster.url,
      prefix,
      name: 'cluster-pub',
      log,
      credentialsFile: cluster.credentialsFile('control'),
    });
    const subjects = control.subjects;
    const events = subjects.streams.events;
    try {
      const before = await control.publish(subjects.environmentEvents('env1'), new TextEncoder().encode('one'));
      const connectedTo = cluster.urls.indexOf(`nats://${control.nc.getServer()}`);
      expect(connectedTo).toBeGreaterThanOrEqual(0);
      await cluster.kill(connectedTo);
      let after: Awaited<ReturnType<Bus['publish']>> | undefined;
      const deadline = Date.now() + 60_000;
      while (after === undefined) {
        try {
          after = await control.publish(subjects.environmentEvents('env1'), new TextEncoder().encode('two'));
        } catch (e) {
          if (Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      expect(after.seq).toBe(before.seq + 1);
      expect(cluster.urls.indexOf(`nats://${control.nc.getServer()}`)).not.toBe(connectedTo);
      const info = await control.jsm.streams.info(events).catch(() => undefined);
      if (info !== undefined) expect(info.state.messages).toBeGreaterThanOrEqual(2);
      await cluster.start(connectedTo);
    } finally {
      await control.close();
    }
  });
});
