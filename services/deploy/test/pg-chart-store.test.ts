// Charts live in PostgreSQL (issue 26): a worker on a fresh disk — another worker of the host, or its
// replacement — reads every revision another wrote, for a redeploy or a rollback. Secret values stay
// sealed at rest (no row holds one in clear), helm gets an opened copy only while it runs, a key
// rotation seals them again, and removing a service takes its charts with it.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Database, openDatabase } from '@stageline/db';
import { createLogger } from '@stageline/log';
import { bus, control } from '@stageline/proto';
import { isSealed, keyIdOf, memorySecrets } from '@stageline/secrets';
import { useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgChartStore } from '../src/adapters/db/chart-store.ts';
import { entities } from '../src/adapters/db/entities.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { FsChartStore } from '../src/adapters/fs/chart-store.ts';
import { renderChart } from '../src/domain/chart.ts';
import { workloadFromJob } from '../src/domain/workload.ts';

const isolated = useIsolatedEnvironment();
const SECRET = `pg-chart-${randomUUID()}`;
const key = (id: string) => ({ id, bytes: randomBytes(32) });
const k1 = key('k1');
const k2 = key('k2');
let db: Database;
const dirs: string[] = [];

beforeAll(async () => {
  db = await openDatabase({
    url: isolated.databaseUrl,
    schema: 'deploy',
    entities,
    migrations,
    log: createLogger({ service: 'test', level: 'silent' }),
  });
});
afterAll(async () => {
  await db?.close();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function store(keys = [k1], active = 'k1'): Promise<{ store: PgChartStore; dir: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pg-charts-'));
  dirs.push(dir);
  const secrets = memorySecrets(keys, active);
  return { store: new PgChartStore({ db, secrets, legacy: new FsChartStore(dir, secrets) }), dir };
}

function chart(serviceId: string, revision: number, message: string) {
  return renderChart(
    workloadFromJob(
      bus.DeployJob.fromPartial({
        environmentId: 'env-1',
        environmentName: 'staging',
        project: 'demo',
        image: `127.0.0.1:5000/demo/staging/web:${revision}`,
        service: {
          id: serviceId,
          name: 'web',
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          source: { $case: 'container', value: { image: 'x', tag: '1', ports: [{ port: 8080, public: true }] } },
          envVars: [
            { key: 'MESSAGE', value: message },
            { key: 'API_TOKEN', value: SECRET, secret: true },
          ],
        },
      }),
    ),
    revision,
  );
}

const rows = (serviceId: string) =>
  db
    .em()
    .execute<{ path: string; content: string; sensitive: boolean }[]>(
      'select path, content, sensitive from chart_file where service_id = ? order by revision, path',
      [serviceId],
    );

describe('PgChartStore', () => {
  it("reads, on another worker's empty disk, every revision one worker wrote: what a rollback needs", async () => {
    const serviceId = `svc-${randomUUID()}`;
    const writer = await store();
    const one = await writer.store.write(
      { environmentId: 'env-1', serviceId, revision: 1 },
      chart(serviceId, 1, 'first'),
    );
    const two = await writer.store.write(
      { environmentId: 'env-1', serviceId, revision: 2 },
      chart(serviceId, 2, 'second'),
    );
    expect(one).toBe(`db:env-1/${serviceId}/1`);
    // Nothing of it on the writer's disk.
    expect(await readdir(writer.dir)).toEqual([]);

    const replacement = await store();
    const files = await replacement.store.read(one);
    expect(files?.map((f) => f.path)).toEqual(
      chart(serviceId, 1, 'first')
        .files.map((f) => f.path)
        .sort(),
    );
    const manifests1 = JSON.stringify(await replacement.store.manifests(one));
    const manifests2 = JSON.stringify(await replacement.store.manifests(two));
    expect(manifests1).toContain('first');
    expect(manifests2).toContain('second');
    expect(await replacement.store.customChart(one)).toBeUndefined();
    expect(await replacement.store.read(`db:env-1/${serviceId}/3`)).toBeUndefined();
  });

  it('keeps secret values sealed in the rows; helm gets a copy in clear only until close()', async () => {
    const serviceId = `svc-${randomUUID()}`;
    const { store: s, dir } = await store();
    const chartPath = await s.write({ environmentId: 'env-1', serviceId, revision: 1 }, chart(serviceId, 1, 'x'));
    const stored = await rows(serviceId);
    expect(stored.some((r) => r.sensitive)).toBe(true);
    for (const r of stored) {
      expect(r.content).not.toContain(SECRET);
      expect(r.content).not.toContain(Buffer.from(SECRET).toString('base64'));
      if (r.sensitive) expect(isSealed(r.content)).toBe(true);
    }
    const read = await s.read(chartPath);
    expect(
      read
        ?.filter((f) => f.sensitive)
        .some((f) => f.content.includes(Buffer.from(SECRET).toString('base64')) || f.content.includes(SECRET)),
    ).toBe(true);
    const opened = await s.open(chartPath);
    expect(opened.dir.startsWith(dir)).toBe(true);
    expect((await readdir(opened.dir)).length).toBeGreaterThan(0);
    await opened.close();
    await expect(readdir(opened.dir)).rejects.toThrow(/ENOENT/);
  });

  it('seals the rows again under a new key, and a rewrite of a revision replaces its files', async () => {
    const serviceId = `svc-${randomUUID()}`;
    const before = await store([k1], 'k1');
    const chartPath = await before.store.write(
      { environmentId: 'env-1', serviceId, revision: 1 },
      chart(serviceId, 1, 'a'),
    );
    await before.store.write({ environmentId: 'env-1', serviceId, revision: 1 }, chart(serviceId, 1, 'b'));
    expect(JSON.stringify(await before.store.manifests(chartPath))).toContain('"b"');
    const after = await store([k1, k2], 'k2');
    expect(await after.store.reseal()).toBeGreaterThan(0);
    for (const r of (await rows(serviceId)).filter((x) => x.sensitive)) expect(keyIdOf(r.content)).toBe('k2');
    const onlyK2 = await store([k2], 'k2');
    expect(await onlyK2.store.read(chartPath)).toBeDefined();
  });

  it('removes every revision of a removed service', async () => {
    const serviceId = `svc-${randomUUID()}`;
    const { store: s } = await store();
    const chartPath = await s.write({ environmentId: 'env-1', serviceId, revision: 1 }, chart(serviceId, 1, 'x'));
    await s.removeService('env-1', serviceId);
    expect(await rows(serviceId)).toEqual([]);
    expect(await s.read(chartPath)).toBeUndefined();
  });
});
