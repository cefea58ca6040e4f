import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUS_IDENTITIES, type BusIdentity, busPermissions } from '../src/auth.ts';
import { natsServerConfig } from '../src/nats-config.ts';
import { createSubjects } from '../src/subjects.ts';

// The allow lists as data; the e2e test (test/e2e/bus-auth.test.ts) shows the server enforcing them.
const subjects = createSubjects('stageline');
const pub = (identity: BusIdentity) => busPermissions(subjects, identity).publish;
const SERVICES: BusIdentity[] = ['control', 'planner', 'build', 'deploy'];

describe('bus permissions', () => {
  it('only the planner publishes jobs; workers publish their own results only; control neither', () => {
    for (const identity of BUS_IDENTITIES) {
      const jobs = pub(identity).filter((s) => s.startsWith('stageline.jobs.'));
      expect(jobs, identity).toEqual(
        identity === 'planner'
          ? ['stageline.jobs.build.*', 'stageline.jobs.deploy.*', 'stageline.jobs.deploy.*.*']
          : [],
      );
    }
    expect(pub('build').filter((s) => s.startsWith('stageline.results.'))).toEqual(['stageline.results.build.*']);
    expect(pub('deploy').filter((s) => s.startsWith('stageline.results.'))).toEqual(['stageline.results.deploy.*']);
    expect(pub('control').some((s) => s.startsWith('stageline.results.') || s.startsWith('stageline.jobs.'))).toBe(
      false,
    );
  });

  it('only requests publishes requests, and nothing else of Stageline', () => {
    for (const identity of BUS_IDENTITIES) {
      expect(
        pub(identity).some((s) => s.startsWith('stageline.requests.')),
        identity,
      ).toBe(identity === 'requests');
    }
    expect(busPermissions(subjects, 'requests')).toEqual({
      publish: ['$JS.API.INFO', 'stageline.requests.>'],
      subscribe: ['_INBOX.requests.>'],
    });
  });

  it('gives no service a stream-admin right, a wildcard on the JetStream API, or another inbox', () => {
    for (const identity of SERVICES) {
      const { publish, subscribe } = busPermissions(subjects, identity);
      for (const s of publish) {
        expect(s, identity).not.toMatch(
          /^\$JS\.API\.(STREAM\.(CREATE|UPDATE|DELETE|PURGE)|CONSUMER\.DURABLE)|^\$JS\.API\.>$/,
        );
        expect(s.endsWith('.API.>') || s === '>' || s === '$JS.>', identity).toBe(false);
      }
      expect(
        subscribe.filter((s) => s.startsWith('_INBOX')),
        identity,
      ).toEqual([`_INBOX.${identity}.>`]);
    }
    // Ephemeral consumers for WatchDeployment and StreamLogs, on the events and logs streams only.
    expect(pub('control').filter((s) => s.includes('CONSUMER.CREATE'))).toEqual([
      '$JS.API.CONSUMER.CREATE.STAGELINE_EVENTS',
      '$JS.API.CONSUMER.CREATE.STAGELINE_LOGS',
    ]);
    expect(pub('provision')).toEqual(['$JS.API.>']);
  });

  it('renders a configuration nats-server accepts', () => {
    const binary = ['/usr/sbin/nats-server', '/usr/local/bin/nats-server'].find((b) => existsSync(b));
    const users = Object.fromEntries(BUS_IDENTITIES.map((i) => [i, { user: i, password: `pw-${i}` }]));
    const dir = mkdtempSync(path.join(tmpdir(), 'stageline-natsconf-'));
    try {
      const text = natsServerConfig({ subjects, users, host: '127.0.0.1', port: -1, storeDir: path.join(dir, 's') });
      expect(text).toContain('"$JS.API.CONSUMER.MSG.NEXT.STAGELINE_BUILD_JOBS.STAGELINE_build-workers"');
      expect(text).not.toContain('no_auth_user');
      if (binary === undefined) return;
      writeFileSync(path.join(dir, 'nats.conf'), text);
      execFileSync(binary, ['-c', path.join(dir, 'nats.conf'), '-t'], { stdio: 'pipe' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
