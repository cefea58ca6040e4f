// The chart store keeps secret values sealed at rest (issue 20): the Secret of a generated chart and a
// custom chart's values are written as `<file>.sealed`, read back in memory, opened in clear only for
// the length of a helm command, sealed again under a new key, and an older store's clear Secret too.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bus, control } from '@stageline/proto';
import { isSealed, keyIdOf, memorySecrets } from '@stageline/secrets';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsChartStore, SEALED_SUFFIX } from '../src/adapters/fs/chart-store.ts';
import { renderChart } from '../src/domain/chart.ts';
import { workloadFromJob } from '../src/domain/workload.ts';

const SECRET = `chart-store-${randomUUID()}`;
const key = (id: string) => ({ id, bytes: randomBytes(32) });
const k1 = key('k1');
const k2 = key('k2');

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'deploy-charts-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function chartWithSecret(revision = 1) {
  return renderChart(
    workloadFromJob(
      bus.DeployJob.fromPartial({
        environmentId: 'env-1',
        environmentName: 'staging',
        project: 'demo',
        image: '127.0.0.1:5000/demo/staging/web:1',
        service: {
          id: 'svc-1',
          name: 'web',
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          source: { $case: 'container', value: { image: 'x', tag: '1', ports: [{ port: 8080, public: true }] } },
          envVars: [
            { key: 'MESSAGE', value: 'hello' },
            { key: 'API_TOKEN', value: SECRET, secret: true },
          ],
        },
      }),
    ),
    revision,
  );
}

/** Every file under `dir` (relative path → bytes). */
async function filesUnder(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(path.relative(dir, p), await readFile(p));
    }
  };
  await walk(dir);
  return out;
}

/** The secret in any form a file could carry it: as given, or base64 (a Secret's data). */
function holdsSecret(bytes: Buffer): boolean {
  return bytes.includes(SECRET) || bytes.includes(Buffer.from(SECRET).toString('base64'));
}

describe('FsChartStore', () => {
  it('writes the Secret sealed, never in clear, and reads it back whole', async () => {
    const store = new FsChartStore(path.join(root, 'a'), memorySecrets([k1]));
    const chart = chartWithSecret();
    expect(chart.files.filter((f) => f.sensitive).map((f) => f.path)).toEqual(['templates/secret.yaml']);
    const dir = await store.write({ environmentId: 'env-1', serviceId: 'svc-1', revision: 1 }, chart);

    const onDisk = await filesUnder(dir);
    expect([...onDisk.keys()]).toContain(`templates/secret.yaml${SEALED_SUFFIX}`);
    expect([...onDisk.keys()]).not.toContain('templates/secret.yaml');
    expect([...onDisk].filter(([, bytes]) => holdsSecret(bytes)).map(([name]) => name)).toEqual([]);
    expect(isSealed(onDisk.get(`templates/secret.yaml${SEALED_SUFFIX}`)!.toString())).toBe(true);

    // Read back as written: the same files, contents and flags (a rollback writes them again).
    expect(await store.read(dir)).toEqual([...chart.files].sort((a, b) => (a.path < b.path ? -1 : 1)));
    const secret = (await store.manifests(dir)).find((m) => m.kind === 'Secret') as unknown as {
      data: Record<string, string>;
    };
    expect(Buffer.from(secret.data.API_TOKEN!, 'base64').toString()).toBe(SECRET);
  });

  it('opens a copy in clear, 0600 in 0700, for as long as a command needs it', async () => {
    const store = new FsChartStore(path.join(root, 'b'), memorySecrets([k1]));
    const dir = await store.write({ environmentId: 'env-1', serviceId: 'svc-1', revision: 1 }, chartWithSecret());
    const opened = await store.open(dir);
    const secretFile = path.join(opened.dir, 'templates', 'secret.yaml');
    expect(holdsSecret(await readFile(secretFile))).toBe(true);
    expect((await stat(secretFile)).mode & 0o777).toBe(0o600);
    expect((await stat(opened.dir)).mode & 0o777).toBe(0o700);
    expect((await stat(path.dirname(secretFile))).mode & 0o777).toBe(0o700);
    expect((await readdir(opened.dir)).sort()).toEqual(['Chart.yaml', 'templates', 'values.yaml']);
    await opened.close();
    await expect(stat(opened.dir)).rejects.toMatchObject({ code: 'ENOENT' });

    // A copy a crash left behind goes at the next start.
    const left = await store.open(dir);
    await store.removeOpened();
    await expect(stat(left.dir)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(holdsSecret(Buffer.concat([...(await filesUnder(store.root)).values()]))).toBe(false);
  });

  it('seals again under a new key, and seals a Secret an older version stored in clear', async () => {
    const chartsRoot = path.join(root, 'c');
    const before = new FsChartStore(chartsRoot, memorySecrets([k1]));
    const sealedDir = await before.write(
      { environmentId: 'env-1', serviceId: 'svc-1', revision: 1 },
      chartWithSecret(),
    );
    // An older version's chart: the Secret in clear, as templates/secret.yaml.
    const legacyDir = path.join(chartsRoot, 'env-1', 'svc-2', '1');
    const legacySecret = chartWithSecret().files.find((f) => f.path === 'templates/secret.yaml')!;
    await mkdir(path.join(legacyDir, 'templates'), { recursive: true, mode: 0o700 });
    await writeFile(path.join(legacyDir, 'templates', 'secret.yaml'), legacySecret.content, { mode: 0o600 });

    const after = new FsChartStore(chartsRoot, memorySecrets([k1, k2], 'k2'));
    expect(await after.reseal()).toBe(2);
    expect(await after.reseal()).toBe(0); // nothing left to do
    for (const dir of [sealedDir, legacyDir]) {
      const envelope = await readFile(path.join(dir, 'templates', `secret.yaml${SEALED_SUFFIX}`), 'utf8');
      expect(keyIdOf(envelope)).toBe('k2');
    }
    await expect(stat(path.join(legacyDir, 'templates', 'secret.yaml'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(holdsSecret(Buffer.concat([...(await filesUnder(chartsRoot)).values()]))).toBe(false);
    // Only the new key is needed from now on.
    const onlyK2 = new FsChartStore(chartsRoot, memorySecrets([k2]));
    const files = await onlyK2.read(legacyDir);
    expect(files).toEqual([{ path: 'templates/secret.yaml', content: legacySecret.content, sensitive: true }]);
  });

  it('keeps a file it cannot open as it is (a start never fails on it) and fails where it is read', async () => {
    const chartsRoot = path.join(root, 'd');
    const dir = await new FsChartStore(chartsRoot, memorySecrets([k1])).write(
      { environmentId: 'env-1', serviceId: 'svc-1', revision: 1 },
      chartWithSecret(),
    );
    const withoutK1 = new FsChartStore(chartsRoot, memorySecrets([k2]));
    expect(await withoutK1.reseal()).toBe(0);
    await expect(withoutK1.read(dir)).rejects.toThrow(/k1/);
  });
});
