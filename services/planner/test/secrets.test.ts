// Secret values in the planner's schema (issue 20): kept sealed, sealed again under a new key (also
// values stored in clear by an older version), purged with their service or their environment.
import { randomBytes, randomUUID } from 'node:crypto';
import { Bus } from '@stageline/bus';
import { type Database, openDatabase } from '@stageline/db';
import { createLogger } from '@stageline/log';
import { bus as busv1 } from '@stageline/proto';
import { isSealed, keyIdOf, memorySecrets, seal } from '@stageline/secrets';
import { useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entities } from '../src/adapters/db/entities.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { purgeSecrets, resealPlannerSecrets } from '../src/adapters/db/secrets.ts';
import { consumeEnvironmentEvents } from '../src/adapters/nats/consumers.ts';
import { rollbackDefinitions } from '../src/domain/rollback.ts';

const isolated = useIsolatedEnvironment();
let db: Database;
const k1 = { id: 'k1', bytes: randomBytes(32) };
const k2 = { id: 'k2', bytes: randomBytes(32) };

beforeAll(async () => {
  db = await openDatabase({
    url: isolated.databaseUrl,
    schema: 'planner',
    entities,
    migrations,
    log: createLogger({ service: 'planner-test', level: 'silent' }),
  });
});
afterAll(() => db?.close());

const snapshotOf = (services: Array<{ id: string; secret: string }>) => ({
  environment: { id: 'e' },
  services: services.map((s) => ({
    id: s.id,
    name: `svc-${s.id.slice(0, 4)}`,
    envVars: [
      { key: 'MODE', value: 'production', secret: false },
      { key: 'TOKEN', value: s.secret, secret: true },
    ],
  })),
});
const stateOf = (outputs: Record<string, Record<string, string>>) => ({
  services: Object.entries(outputs).map(([serviceId, o]) => ({ serviceId, outputs: o, steps: [] })),
});

async function insertRun(
  environmentId: string,
  snapshot: unknown,
  state: unknown,
  status = 'SUCCEEDED',
): Promise<string> {
  const id = randomUUID();
  await db.em().execute(
    `insert into deployment (id, environment_id, action, status, requester, service_ids, version, force_build,
       state, snapshot, created_at) values (?, ?, 'DEPLOY', ?, 't', '[]', '', false, ?::jsonb, ?::jsonb, now())`,
    [id, environmentId, status, state === null ? null : JSON.stringify(state), JSON.stringify(snapshot)],
  );
  return id;
}
async function insertStatus(environmentId: string, serviceId: string, outputs: Record<string, string>) {
  await db.em().execute(
    `insert into service_status (service_id, environment_id, has_resources, stopped, version, image, state, updated_at, outputs)
       values (?, ?, true, false, '', '', 'DEPLOYED', now(), ?::jsonb)`,
    [serviceId, environmentId, JSON.stringify(outputs)],
  );
}
interface Stored {
  snapshot: { services: Array<{ id: string; envVars: Array<{ key: string; value: string; secret: boolean }> }> };
  state: { services: Array<{ serviceId: string; outputs: Record<string, string> }> };
}
const row = async (id: string) =>
  (await db.em().execute<Stored[]>('select snapshot, state from deployment where id = ?', [id]))[0]!;
const status = async (serviceId: string) =>
  (
    await db
      .em()
      .execute<Array<{ outputs: Record<string, string> }>>('select outputs from service_status where service_id = ?', [
        serviceId,
      ])
  )[0];

describe('secret values in the planner', () => {
  it('are sealed again under the active key: envelopes under an older key and values an older version kept in clear', async () => {
    const env = randomUUID();
    const [a, b] = [randomUUID(), randomUUID()];
    const run = await insertRun(
      env,
      snapshotOf([
        { id: a, secret: seal(k1, 'tok-a') },
        { id: b, secret: 'tok-b-in-clear' },
      ]),
      stateOf({ [a]: { A_URL: seal(k1, 'pg://a') }, [b]: {} }),
    );
    await insertStatus(env, a, { A_URL: seal(k1, 'pg://a') });
    const secrets = memorySecrets([k1, k2], 'k2');
    expect(await resealPlannerSecrets(db, secrets)).toBe(4);
    const { snapshot, state } = await row(run);
    const tokens = snapshot.services.map((s) => s.envVars[1]!.value);
    expect(tokens.map(keyIdOf)).toEqual(['k2', 'k2']);
    expect(tokens.map((t: string) => secrets.open(t))).toEqual(['tok-a', 'tok-b-in-clear']);
    expect(snapshot.services[0]!.envVars[0]).toEqual({ key: 'MODE', value: 'production', secret: false });
    expect(secrets.open(state.services[0]!.outputs.A_URL!)).toBe('pg://a');
    expect(keyIdOf((await status(a))!.outputs.A_URL!)).toBe('k2');
    expect(await resealPlannerSecrets(db, secrets)).toBe(0);
  });

  it('a service removed while a run waits leaves the queued run; a run that started keeps it, purged', async () => {
    const env = randomUUID();
    const [gone, kept] = [randomUUID(), randomUUID()];
    const both = () =>
      snapshotOf([
        { id: gone, secret: seal(k2, 'x') },
        { id: kept, secret: seal(k2, 'y') },
      ]);
    const started = await insertRun(env, both(), stateOf({ [gone]: {}, [kept]: {} }), 'RUNNING');
    const queued = await insertRun(env, both(), null, 'QUEUED');
    await purgeSecrets(db, env, gone);
    expect((await row(queued)).snapshot.services.map((s) => s.id)).toEqual([kept]);
    expect(isSealed((await row(queued)).snapshot.services[0]!.envVars[1]!.value)).toBe(true);
    const running = (await row(started)).snapshot.services;
    expect(running.map((s) => s.id)).toEqual([gone, kept]);
    expect(running[0]!.envVars[1]!.value).toBe('');
  });

  it('are purged for a removed service only, in every run, and its status goes', async () => {
    const env = randomUUID();
    const [gone, kept] = [randomUUID(), randomUUID()];
    const runs = [
      await insertRun(
        env,
        snapshotOf([
          { id: gone, secret: seal(k2, 'x') },
          { id: kept, secret: seal(k2, 'y') },
        ]),
        stateOf({ [gone]: { G: seal(k2, 'g') }, [kept]: { K: seal(k2, 'k') } }),
      ),
      await insertRun(
        env,
        snapshotOf([{ id: gone, secret: seal(k2, 'x2') }]),
        stateOf({ [gone]: { G: seal(k2, 'g2') } }),
      ),
    ];
    await insertStatus(env, gone, { G: seal(k2, 'g') });
    await insertStatus(env, kept, { K: seal(k2, 'k') });
    expect(await purgeSecrets(db, env, gone)).toBe(2);
    for (const id of runs) {
      const { snapshot, state } = await row(id);
      const goneVars = snapshot.services.find((s) => s.id === gone)!.envVars;
      expect(goneVars).toEqual([
        { key: 'MODE', value: 'production', secret: false },
        { key: 'TOKEN', value: '', secret: true },
      ]);
      expect(state.services.find((s) => s.serviceId === gone)!.outputs).toEqual({});
    }
    const first = await row(runs[0]!);
    expect(isSealed(first.snapshot.services[1]!.envVars[1]!.value)).toBe(true);
    expect(Object.keys(first.state.services[1]!.outputs)).toEqual(['K']);
    expect(await status(gone)).toBeUndefined();
    expect(Object.keys((await status(kept))!.outputs)).toEqual(['K']);
  });

  it('are purged for every service of a deleted environment, and no other environment', async () => {
    const [env, other] = [randomUUID(), randomUUID()];
    const s = randomUUID();
    const run = await insertRun(
      env,
      snapshotOf([{ id: s, secret: seal(k2, 'x') }]),
      stateOf({ [s]: { O: seal(k2, 'o') } }),
    );
    const elsewhere = await insertRun(other, snapshotOf([{ id: randomUUID(), secret: seal(k2, 'z') }]), stateOf({}));
    await insertStatus(env, s, { O: seal(k2, 'o') });
    await purgeSecrets(db, env);
    expect(JSON.stringify(await row(run))).not.toContain('sl:v1:');
    expect((await status(s))!.outputs).toEqual({});
    expect(JSON.stringify(await row(elsewhere))).toContain('sl:v1:k2:');
  });

  it('a rollback deploys the env vars its target run deployed, secret values sealed as then; a value purged since stays current', () => {
    const now = [
      {
        id: 'a',
        envVars: [
          { key: 'MODE', value: 'now', secret: false },
          { key: 'TOKEN', value: 'sealed-now', secret: true },
          { key: 'NEW', value: 'sealed-new', secret: true },
        ],
      },
      { id: 'b', envVars: [{ key: 'TOKEN', value: 'sealed-b-now', secret: true }] },
      { id: 'c', envVars: [{ key: 'TOKEN', value: 'sealed-c-now', secret: true }] },
    ];
    const then = {
      services: [
        {
          id: 'a',
          envVars: [
            { key: 'MODE', value: 'then', secret: false },
            { key: 'TOKEN', value: 'sealed-then', secret: true },
          ],
        },
        { id: 'b', envVars: [{ key: 'TOKEN', value: '', secret: true }] },
      ],
    };
    const restored = new Set(['a', 'b', 'c']);
    expect(rollbackDefinitions(now, then.services, restored)).toEqual([
      {
        id: 'a',
        envVars: [
          { key: 'MODE', value: 'then', secret: false },
          { key: 'TOKEN', value: 'sealed-then', secret: true },
        ],
      },
      now[1],
      // Not in the target run: as it is now.
      now[2],
    ]);
    expect(rollbackDefinitions(now, [], restored)).toEqual(now);
  });

  it("follows control's events: serviceRemoved purges that service's values (real NATS, the planner's consumer)", async () => {
    const env = randomUUID();
    const [gone, kept] = [randomUUID(), randomUUID()];
    const run = await insertRun(
      env,
      snapshotOf([
        { id: gone, secret: seal(k2, 'x') },
        { id: kept, secret: seal(k2, 'y') },
      ]),
      stateOf({}),
    );
    const log = createLogger({ service: 'planner-test', level: 'silent' });
    const bus = await Bus.connect({ url: isolated.natsUrl, prefix: isolated.busPrefix, name: 'planner-test', log });
    await bus.ensureStreams();
    const consumer = await consumeEnvironmentEvents(bus, (environmentId, serviceId) =>
      purgeSecrets(db, environmentId, serviceId),
    );
    try {
      const event = busv1.EnvironmentEvent.fromPartial({
        eventId: randomUUID(),
        environmentId: env,
        event: { $case: 'serviceRemoved', value: { serviceId: gone } },
      });
      await bus.publish(bus.subjects.environmentEvents(env), busv1.EnvironmentEvent.encode(event).finish());
      const tokens = async () => (await row(run)).snapshot.services.map((s) => s.envVars[1]!.value);
      for (let i = 0; i < 200 && (await tokens())[0] !== ''; i++) await new Promise((r) => setTimeout(r, 50));
      const [goneToken, keptToken] = await tokens();
      expect(goneToken).toBe('');
      expect(isSealed(keptToken!)).toBe(true);
    } finally {
      await consumer.stop();
      await bus.close();
    }
  });

  it('in service runs kept as rows (planner-0005): sealed again, and purged with their service', async () => {
    const env = randomUUID();
    const [gone, kept] = [randomUUID(), randomUUID()];
    const run = await insertRun(env, snapshotOf([]), { services: [] });
    for (const [position, serviceId, outputs] of [
      [0, gone, { G: seal(k1, 'g') }],
      [1, kept, { K: seal(k1, 'k') }],
    ] as const) {
      await db
        .em()
        .execute('insert into service_run (deployment_id, position, service_id, run) values (?, ?, ?, ?::jsonb)', [
          run,
          position,
          serviceId,
          JSON.stringify({ serviceId, outputs, steps: [] }),
        ]);
    }
    const outputs = async () =>
      (
        await db
          .em()
          .execute<Array<{ run: { outputs: Record<string, string> } }>>(
            'select run from service_run where deployment_id = ? order by position',
            [run],
          )
      ).map((r) => r.run.outputs);
    const secrets = memorySecrets([k1, k2], 'k2');
    await resealPlannerSecrets(db, secrets);
    const [g, k] = await outputs();
    expect([keyIdOf(g!.G!), keyIdOf(k!.K!)]).toEqual(['k2', 'k2']);
    expect(secrets.open(k!.K!)).toBe('k');
    expect(await purgeSecrets(db, env, gone)).toBe(1);
    const after = await outputs();
    expect(after[0]).toEqual({});
    expect(Object.keys(after[1]!)).toEqual(['K']);
  });
});
