// Secret env values at rest in control (issue 20): sealed before they are stored, handed to the planner
// sealed, kept sealed the same way when unchanged, sealed anew for a clone, purged with the environment.
import { randomUUID } from 'node:crypto';
import { Bus } from '@stageline/bus';
import { openDatabase } from '@stageline/db';
import { callUnary, connect } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { bus as busv1, control, snapshot } from '@stageline/proto';
import { isSealed, KeyRing, keyIdOf } from '@stageline/secrets';
import { testSecurity } from '@stageline/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entities } from '../src/adapters/db/entities.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { resealControlSecrets } from '../src/adapters/db/reseal.ts';
import { useControl } from './harness.ts';

const SECRET = `hunter2-${randomUUID()}`;
const ctl = useControl();
const security = testSecurity();
const keys = KeyRing.load({ dir: security.keyDir });
let db: pg.Client;

beforeAll(async () => {
  db = new pg.Client({ connectionString: ctl.env.databaseUrl });
  await db.connect();
});
afterAll(() => db.end());

const storedSecrets = async (serviceId: string): Promise<Record<string, string>> =>
  (await db.query('select secrets from control.service where id = $1', [serviceId])).rows[0]?.secrets;

async function environmentWithSecret(name: string) {
  const { environment } = await callUnary(
    ctl.environments,
    'createEnvironment',
    control.CreateEnvironmentRequest.fromPartial({ project: 'vault', name }),
  );
  const { service } = await callUnary(
    ctl.environments,
    'addService',
    control.AddServiceRequest.fromPartial({
      environmentId: environment!.id,
      service: {
        name: 'web',
        kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
        source: { $case: 'container', value: { image: 'docker.io/library/nginx', tag: '1.27' } },
        envVars: [
          { key: 'MODE', value: 'production' },
          { key: 'API_TOKEN', value: SECRET, secret: true },
        ],
      },
    }),
  );
  return { environmentId: environment!.id, service: service! };
}

async function snapshotOf(environmentId: string) {
  const client = connect(snapshot.SnapshotServiceClient, ctl.address, security.service('planner'));
  try {
    return await callUnary(client, 'getEnvironmentSnapshot', { environmentId });
  } finally {
    client.close();
  }
}

describe('secret env values in control', () => {
  it('are stored sealed under the active key, and the planner gets them sealed', async () => {
    const { environmentId, service } = await environmentWithSecret('stored');
    const stored = await storedSecrets(service.id);
    expect(Object.keys(stored)).toEqual(['API_TOKEN']);
    expect(isSealed(stored.API_TOKEN!)).toBe(true);
    expect(keyIdOf(stored.API_TOKEN!)).toBe(keys.activeKeyId());
    expect(keys.open(stored.API_TOKEN!)).toBe(SECRET);
    const dump = JSON.stringify((await db.query('select * from control.service where id = $1', [service.id])).rows);
    expect(dump).not.toContain(SECRET);

    const snap = await snapshotOf(environmentId);
    const vars = snap.services[0]!.envVars;
    expect(vars.find((v) => v.key === 'MODE')!.value).toBe('production');
    expect(vars.find((v) => v.key === 'API_TOKEN')!.value).toBe(stored.API_TOKEN);
  });

  it('keep their envelope when the same value is sent again, and get a new one when it changes', async () => {
    const { environmentId, service } = await environmentWithSecret('updated');
    const before = await storedSecrets(service.id);
    const withValue = (value: string) => ({
      ...service,
      envVars: service.envVars.map((v) => (v.key === 'API_TOKEN' ? { ...v, value } : v)),
    });
    const same = await callUnary(ctl.environments, 'updateService', { environmentId, service: withValue(SECRET) });
    expect(same.service!.updatedAt).toEqual(service.updatedAt);
    expect(await storedSecrets(service.id)).toEqual(before);
    await callUnary(ctl.environments, 'updateService', { environmentId, service: withValue('rotated-value') });
    const after = await storedSecrets(service.id);
    expect(after.API_TOKEN).not.toBe(before.API_TOKEN);
    expect(keys.open(after.API_TOKEN!)).toBe('rotated-value');
  });

  it('are sealed anew for a clone: its own ciphertexts, the same values', async () => {
    const { environmentId, service } = await environmentWithSecret('source');
    const { environment } = await callUnary(ctl.environments, 'cloneEnvironment', {
      sourceEnvironmentId: environmentId,
      name: 'clone',
      preview: true,
    });
    const cloned = (await callUnary(ctl.environments, 'listServices', { environmentId: environment!.id })).services[0]!;
    const source = await storedSecrets(service.id);
    const clone = await storedSecrets(cloned.id);
    expect(clone.API_TOKEN).not.toBe(source.API_TOKEN);
    expect(keys.open(clone.API_TOKEN!)).toBe(SECRET);
  });

  it('are purged (the row keeps none) once the environment is deleted', async () => {
    const { environmentId, service } = await environmentWithSecret('deleted');
    const bus = await Bus.connect({
      url: ctl.env.natsUrl,
      prefix: ctl.env.busPrefix,
      name: 'secrets-test',
      log: createLogger({ service: 'secrets-test', level: 'silent' }),
    });
    try {
      const deploymentId = randomUUID();
      const event = busv1.DeploymentEvent.fromPartial({
        environmentStatus: control.EnvironmentStatus.ENVIRONMENT_STATUS_DELETED,
        deployment: {
          id: deploymentId,
          environmentId,
          action: control.Action.ACTION_DELETE,
          status: control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED,
          services: [{ serviceId: service.id, status: control.ServiceState.SERVICE_STATE_DELETED }],
        },
      });
      await bus.publish(
        bus.subjects.runEvents(environmentId, deploymentId),
        busv1.DeploymentEvent.encode(event).finish(),
      );
      for (let i = 0; i < 200 && Object.keys((await storedSecrets(service.id)) ?? {}).length > 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      await bus.close();
    }
    expect(await storedSecrets(service.id)).toEqual({});
    const status = (await db.query('select status from control.environment where id = $1', [environmentId])).rows[0];
    expect(status.status).toBe(control.EnvironmentStatus.ENVIRONMENT_STATUS_DELETED);
  });

  it('stored in clear by an older version, or under an older key, are sealed under the active key by the sweep at start', async () => {
    const { service } = await environmentWithSecret('legacy');
    const { service: other } = await environmentWithSecret('older-key');
    await db.query(`update control.service set secrets = $1 where id = $2`, [
      { API_TOKEN: 'in-clear-value' },
      service.id,
    ]);
    const old = await storedSecrets(other.id);
    const database = await openDatabase({
      url: ctl.env.databaseUrl,
      schema: 'control',
      entities,
      migrations,
      log: createLogger({ service: 'secrets-test', level: 'silent' }),
    });
    try {
      expect(await resealControlSecrets(database, keys)).toBeGreaterThanOrEqual(1);
      const sealed = await storedSecrets(service.id);
      expect(keyIdOf(sealed.API_TOKEN!)).toBe(keys.activeKeyId());
      expect(keys.open(sealed.API_TOKEN!)).toBe('in-clear-value');
      // Already under the active key: left exactly as it was.
      expect(await storedSecrets(other.id)).toEqual(old);
      expect(await resealControlSecrets(database, keys)).toBe(0);
    } finally {
      await database.close();
    }
  });
});
