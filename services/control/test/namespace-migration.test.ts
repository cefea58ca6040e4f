import { type Database, openDatabase } from '@stageline/db';
import { callUnary, connect, fieldOf } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { control } from '@stageline/proto';
import { testSecurity, useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { migrations } from '../src/adapters/db/migrations.ts';
import { type RunningControl, startControl } from '../src/service.ts';
import { testControlConfig } from './harness.ts';

// Environments from before namespaces were recorded (issue 21) get theirs at start, by the one rule;
// the oldest keeps a namespace that several shared, and the others are left for an operator to move.

const env = useIsolatedEnvironment();
const security = testSecurity();
const log = createLogger({ service: 'control-test', level: process.env.LOG_LEVEL ?? 'silent' });
const uuid = (n: number) => `0196f000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;

let running: RunningControl | undefined;
let environments: control.EnvironmentServiceClient | undefined;
afterAll(async () => {
  environments?.close();
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

describe('migration control-0004-environment-namespace', () => {
  it('assigns existing environments their namespace at start; a clash keeps the oldest', async () => {
    const before = migrations.slice(
      0,
      migrations.findIndex((m) => m.name === 'control-0004-environment-namespace'),
    );
    const settings = (namespace: string) =>
      JSON.stringify({
        maxParallelBuilds: 7,
        maxParallelDeploys: 7,
        schedulingMode: 1,
        mirrorMode: 1,
        kubernetesContext: '',
        namespace,
      });
    await withDatabase(before, async (db) => {
      const sql = db.em().getConnection();
      for (const [n, project, name, namespace] of [
        [1, 'a-b', 'c', ''],
        [2, 'team', 'one', 'shared'],
        [3, 'team', 'two', 'shared'],
      ] as const) {
        await sql.execute(
          `insert into environment (id, project, name, runtime, settings, status, created_at, updated_at)
           values (?, ?, ?, 'kubernetes', ?, 1, now(), now())`,
          [uuid(n), project, name, settings(namespace)],
        );
      }
    });

    running = await startControl(testControlConfig(env), log);
    const recorded = await withDatabase(migrations, async (db) =>
      (await db.em().getConnection().execute(`select id, namespace from environment order by id`)).map((r) => [
        r.id,
        r.namespace,
      ]),
    );
    expect(recorded).toEqual([
      [uuid(1), 'a--b-c'],
      [uuid(2), 'shared'],
      [uuid(3), null],
    ]);

    environments = connect(control.EnvironmentServiceClient, running.address, security.user());
    const error = await callUnary(
      environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({
        project: 'team',
        name: 'three',
        settings: { namespace: 'shared' },
      }),
    ).then(
      () => undefined,
      (e: Error & { code: number }) => e,
    );
    expect(error?.message).toContain(
      `namespace "shared" is already the namespace of environment team/one (${uuid(2)})`,
    );
    expect(fieldOf(error as never)).toBe('settings.namespace');
  });
});
