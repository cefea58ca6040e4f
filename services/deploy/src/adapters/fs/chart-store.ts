// Chart directories on disk: $STAGELINE_STATE/charts/<environment id>/<service id>/<revision>. Ids, not
// names: a service removed and added again under the same name starts its revisions at 1 again.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { ChartStore } from '../../app/ports.ts';
import { type Chart, type ChartFile, type Manifest, renderEscapedTemplate } from '../../domain/chart.ts';
import { CUSTOM_CHART_FILE, type CustomChartRef } from '../../domain/custom-chart.ts';
import type { ChartReader } from '../podman/local-runtime.ts';

export class FsChartStore implements ChartStore, ChartReader {
  readonly root: string;

  /** `root`: the charts directory itself (e.g. `$STAGELINE_STATE/charts`). */
  constructor(root: string) {
    this.root = root;
  }

  dirOf(environmentId: string, serviceId: string, revision: number): string {
    for (const [name, value] of [
      ['environment id', environmentId],
      ['service id', serviceId],
    ] as const) {
      // Ids become path segments: nothing that could climb out of the charts directory.
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(value)) throw new Error(`${name} "${value}" cannot name a directory`);
    }
    return path.join(this.root, environmentId, serviceId, String(revision));
  }

  async write(release: { environmentId: string; serviceId: string; revision: number }, chart: Chart): Promise<string> {
    const dir = this.dirOf(release.environmentId, release.serviceId, release.revision);
    const parent = path.dirname(dir);
    await mkdir(parent, { recursive: true, mode: 0o700 });
    // Written aside, then renamed: a reader never sees half a chart. The Secret's values are in it: 0600.
    const staging = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
    try {
      for (const file of chart.files) {
        const target = path.join(staging, ...file.path.split('/'));
        await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
        await writeFile(target, file.content, { mode: 0o600 });
      }
      // A directory left by an interrupted attempt of the same revision is replaced.
      await rm(dir, { recursive: true, force: true });
      await rename(staging, dir);
    } catch (e) {
      await rm(staging, { recursive: true, force: true });
      throw e;
    }
    return dir;
  }

  async read(chartPath: string): Promise<ChartFile[] | undefined> {
    const files: ChartFile[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
        if (entry.isDirectory()) await walk(path.join(dir, entry.name), rel);
        else if (entry.isFile()) files.push({ path: rel, content: await readFile(path.join(dir, entry.name), 'utf8') });
      }
    };
    try {
      await walk(chartPath, '');
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return undefined;
      throw e;
    }
    return files.sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  /** A custom chart's reference (custom.json), or undefined for a chart Stageline generated. */
  async customChart(chartPath: string): Promise<CustomChartRef | undefined> {
    try {
      return JSON.parse(await readFile(path.join(chartPath, CUSTOM_CHART_FILE), 'utf8')) as CustomChartRef;
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async manifests(chartPath: string): Promise<Manifest[]> {
    const templates = path.join(chartPath, 'templates');
    const names = (await readdir(templates)).filter((n) => n.endsWith('.yaml') || n.endsWith('.yml')).sort();
    const manifests: Manifest[] = [];
    for (const name of names) {
      // What helm would install: the file as its template engine renders it (only our `{{` escapes).
      const rendered = renderEscapedTemplate(name, await readFile(path.join(templates, name), 'utf8'));
      for (const doc of parseAllDocuments(rendered)) {
        if (doc.errors.length > 0) throw new Error(`${name}: ${doc.errors[0]?.message}`);
        const value = doc.toJS() as unknown;
        if (value !== null && typeof value === 'object') manifests.push(value as Manifest);
      }
    }
    return manifests;
  }

  async removeService(environmentId: string, serviceId: string): Promise<void> {
    await rm(path.dirname(this.dirOf(environmentId, serviceId, 0)), { recursive: true, force: true });
  }
}
