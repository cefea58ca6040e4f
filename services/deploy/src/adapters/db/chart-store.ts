// Charts in PostgreSQL (schema `deploy`, table chart_file): every revision's files, where any deploy
// worker of the environment's host — or its replacement on a fresh disk — finds them for a redeploy,
// a restart or a rollback. A chart's path is `db:<environment id>/<service id>/<revision>`.
//
// Same sealing as on disk: a file that holds secret values (ChartFile.sensitive) is stored as the
// @stageline/secrets envelope of its content, never in clear. Helm, which needs files, gets `open()`:
// a copy in clear under the state directory's charts/.open/, removed as soon as the command is done.
// Charts written on disk by an older version (a path that is not `db:`) are still read from there.
import { type Database, newId } from '@stageline/db';
import { resealValue, type Secrets, sweepColumn } from '@stageline/secrets';
import type { ChartStore } from '../../app/ports.ts';
import type { Chart, ChartFile, Manifest } from '../../domain/chart.ts';
import { CUSTOM_CHART_FILE, type CustomChartRef } from '../../domain/custom-chart.ts';
import { chartManifests, type FsChartStore, type OpenedChart } from '../fs/chart-store.ts';
import type { ChartReader } from '../podman/local-runtime.ts';

const SCHEME = 'db:';

interface ChartKey {
  environmentId: string;
  serviceId: string;
  revision: number;
}

export function chartPathOf(key: ChartKey): string {
  return `${SCHEME}${key.environmentId}/${key.serviceId}/${key.revision}`;
}

/** The key of a `db:` path; undefined for a path on disk. */
export function chartKeyOf(chartPath: string): ChartKey | undefined {
  if (!chartPath.startsWith(SCHEME)) return undefined;
  const [environmentId, serviceId, revision] = chartPath.slice(SCHEME.length).split('/');
  const n = Number(revision);
  if (!environmentId || !serviceId || !Number.isInteger(n) || n < 1) throw new Error(`bad chart path ${chartPath}`);
  return { environmentId, serviceId, revision: n };
}

export interface PgChartStoreDeps {
  db: Database;
  secrets: Pick<Secrets, 'seal' | 'open' | 'activeKeyId'>;
  /** Charts an older version kept on this host's disk, and where `open()` puts its copies. */
  legacy: FsChartStore;
}

export class PgChartStore implements ChartStore, ChartReader {
  readonly #deps: PgChartStoreDeps;

  constructor(deps: PgChartStoreDeps) {
    this.#deps = deps;
  }

  async write(release: ChartKey, chart: Chart): Promise<string> {
    const { secrets } = this.#deps;
    const rows = chart.files.map((file) => ({
      id: newId(),
      path: file.path,
      content: file.sensitive === true ? secrets.seal(file.content) : file.content,
      sensitive: file.sensitive === true,
    }));
    await this.#deps.db.retry('writing a chart', (em) =>
      em.transactional(async (tx) => {
        // Files left by an interrupted attempt of the same revision are replaced, all at once.
        await tx.execute('delete from chart_file where environment_id = ? and service_id = ? and revision = ?', [
          release.environmentId,
          release.serviceId,
          release.revision,
        ]);
        for (const row of rows) {
          await tx.execute(
            'insert into chart_file (id, environment_id, service_id, revision, path, content, sensitive) values (?, ?, ?, ?, ?, ?, ?)',
            [row.id, release.environmentId, release.serviceId, release.revision, row.path, row.content, row.sensitive],
          );
        }
      }),
    );
    return chartPathOf(release);
  }

  /** The chart's files, sealed ones opened (in memory) and flagged sensitive; undefined when gone. */
  async read(chartPath: string): Promise<ChartFile[] | undefined> {
    const key = chartKeyOf(chartPath);
    if (key === undefined) return await this.#deps.legacy.read(chartPath);
    const rows = await this.#deps.db.retry('reading a chart', (em) =>
      em.execute<{ path: string; content: string; sensitive: boolean }[]>(
        'select path, content, sensitive from chart_file where environment_id = ? and service_id = ? and revision = ? order by path',
        [key.environmentId, key.serviceId, key.revision],
      ),
    );
    if (rows.length === 0) return undefined;
    return rows.map((r) =>
      r.sensitive
        ? { path: r.path, content: this.#deps.secrets.open(r.content), sensitive: true }
        : { path: r.path, content: r.content },
    );
  }

  async customChart(chartPath: string): Promise<CustomChartRef | undefined> {
    if (chartKeyOf(chartPath) === undefined) return await this.#deps.legacy.customChart(chartPath);
    const files = await this.read(chartPath);
    const custom = files?.find((f) => f.path === CUSTOM_CHART_FILE);
    return custom === undefined ? undefined : (JSON.parse(custom.content) as CustomChartRef);
  }

  async manifests(chartPath: string): Promise<Manifest[]> {
    const files = await this.read(chartPath);
    if (files === undefined) throw new Error(`chart ${chartPath} is gone`);
    return chartManifests(files);
  }

  /** The chart in clear in a directory of its own for a command that reads files (helm); `close()` removes it. */
  async open(chartPath: string): Promise<OpenedChart> {
    const key = chartKeyOf(chartPath);
    if (key === undefined) return await this.#deps.legacy.open(chartPath);
    const files = await this.read(chartPath);
    if (files === undefined) throw new Error(`chart ${chartPath} is gone`);
    return await this.#deps.legacy.openFiles(String(key.revision), files);
  }

  /** Removes opened copies a crash left behind (at start, before any command runs). */
  removeOpened(): Promise<void> {
    return this.#deps.legacy.removeOpened();
  }

  /** Seals again, under the active key, every sealed file under an older one (here and on disk). */
  async reseal(): Promise<number> {
    const run = (sql: string, params: unknown[]) => this.#deps.db.em().execute(sql, params);
    const here = await sweepColumn(run, {
      table: 'chart_file',
      key: 'id',
      column: 'content',
      json: false,
      where: 'sensitive',
      reseal: (value) => {
        const r = resealValue(this.#deps.secrets as Secrets, value as string);
        return { value: r.value, changed: r.changed ? 1 : 0 };
      },
    });
    return here + (await this.#deps.legacy.reseal());
  }

  async removeService(environmentId: string, serviceId: string): Promise<void> {
    await this.#deps.db.retry('removing charts', (em) =>
      em.execute('delete from chart_file where environment_id = ? and service_id = ?', [environmentId, serviceId]),
    );
    await this.#deps.legacy.removeService(environmentId, serviceId);
  }
}
