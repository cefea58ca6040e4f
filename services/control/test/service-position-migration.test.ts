import { type Database, openDatabase } from '@stageline/db';
import { callUnary, connect } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { control } from '@stageline/proto';
import { testSecurity, useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { migrations } from '../src/adapters/db/migrations.ts';
import { normalizeDefinition } from '../src/domain/service-spec.ts';
import { type RunningControl, startControl } from '../src/service.ts';
import { testControlConfig } from './harness.ts';

// Rows written before services had a position get one from the migration: within each stage, the
// order they were listed in until then (by id), so nothing moves when control is upgraded.

const env = useIsolatedEnvironment();
const security = testSecurity();
const log = createLogger({ service: 'control-test', level: process.env.LOG_LEVEL ?? 'silent' });
const uuid = (n: number) => `0196f000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;

let running: RunningControl | undefined;
let client: { environments?: control.EnvironmentServiceClient; pipelines?: control.PipelineServiceClient } = {};
afterAll(async () => {
  client.environments?.close();
  client.pipelines?.close();
  await running?.stop();
});

async function withDatabase<T>(list: typeof migrations, f: (db: Database) => Promise<T>): Promise<T> {
  const db = await openDatabase({ url: env.databaseUrl, schema: 'control', entities: [], migrations: list, log });
  try {
    return await f(db);
  } finally {
    await db.close();
  }
}

describe('migration control-0002-service-position', () => {
  it('gives existing services their listed order as dense positions, then keeps it', async () => {
    // The schema as it was before this migration: every migration listed ahead of it.
    const before = migrations.slice(
      0,
      migrations.findIndex((m) => m.name === 'control-0002-service-position'),
    );
    expect(before.at(-1)?.name).toBe('control-0001-environments');
    const envId = uuid(1);
    const [stageA, stageB] = [uuid(2), uuid(3)];
    // Inserted out of id order; the names say where each must end up.
    const rows: [number, string, string][] = [
      [13, stageA, 'a2'],
      [11, stageA, 'a0'],
      [15, stageB, 'b1'],
      [12, stageA, 'a1'],
      [14, stageB, 'b0'],
    ];
    await withDatabase(before, async (db) => {
      const sql = db.em().getConnection();
      await sql.execute(
        `insert into environment (id, project, name, runtime, settings, status, created_at, updated_at)
         values (?, 'legacy', 'old', 'local', ?, 1, now(), now())`,
        [
          envId,
          JSON.stringify({
            maxParallelBuilds: 7,
            maxParallelDeploys: 7,
            schedulingMode: 1,
            mirrorMode: 1,
            kubernetesContext: '',
            namespace: '',
          }),
        ],
      );
      await sql.execute(
        `insert into stage (id, environment_id, name, position) values (?, ?, 'first', 0), (?, ?, 'second', 1)`,
        [stageA, envId, stageB, envId],
      );
      for (const [n, stageId, name] of rows) {
        const definition = normalizeDefinition(
          control.Service.fromPartial({
            name,
            kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
            source: { $case: 'container', value: { image: 'ghcr.io/acme/app' } },
          }),
        );
        await sql.execute(
          `insert into service (id, environment_id, stage_id, name, kind, definition, created_at, updated_at)
           values (?, ?, ?, ?, 'CONTAINER', ?, now(), now())`,
          [uuid(n), envId, stageId, name, JSON.stringify(definition)],
        );
      }
    });

    running = await startControl(testControlConfig(env), log);
    // TLS and the admin token, as every user.
    client = {
      environments: connect(control.EnvironmentServiceClient, running.address, security.user()),
      pipelines: connect(control.PipelineServiceClient, running.address, security.user()),
    };
    const positions = () =>
      withDatabase(migrations, async (db) =>
        (await db.em().getConnection().execute(`select name, position from service order by stage_id, position`)).map(
          (r) => [r.name, r.position],
        ),
      );
    expect(await positions()).toEqual([
      ['a0', 0],
      ['a1', 1],
      ['a2', 2],
      ['b0', 0],
      ['b1', 1],
    ]);

    const names = async () =>
      (await callUnary(client.environments!, 'listServices', { environmentId: envId })).services.map((s) => s.name);
    expect(await names()).toEqual(['a0', 'a1', 'a2', 'b0', 'b1']);

    // From then on the positions rule: moved last, added last, gaps closed.
    await callUnary(client.pipelines!, 'moveService', { environmentId: envId, serviceId: uuid(11), stageId: stageB });
    const added = await callUnary(
      client.environments!,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: envId,
        service: {
          name: 'a3',
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          stageId: stageA,
          source: { $case: 'container', value: { image: 'ghcr.io/acme/app' } },
        },
      }),
    );
    expect(added.service?.stageId).toBe(stageA);
    expect(await names()).toEqual(['a1', 'a2', 'a3', 'b0', 'b1', 'a0']);
    expect(await positions()).toEqual([
      ['a1', 0],
      ['a2', 1],
      ['a3', 2],
      ['b0', 0],
      ['b1', 1],
      ['a0', 2],
    ]);
  });
});
