// Chart directories on disk: $STAGELINE_STATE/charts/<environment id>/<service id>/<revision>. Ids, not
// names: a service removed and added again under the same name starts its revisions at 1 again.
//
// Secret values never rest here in clear: a file that holds them (ChartFile.sensitive: the Secret, a
// custom chart's values) is written sealed, as `<file>.sealed` (the @stageline/secrets envelope of its
// content). Reads open it in memory; helm, which needs files, gets `open()`: a copy in clear under
// `.open/`, 0600 in 0700, removed as soon as the command is done (and at the next start after a crash).
import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { resealValue, type Secrets } from '@stageline/secrets';
import { parseAllDocuments } from 'yaml';
import type { ChartStore } from '../../app/ports.ts';
import { type Chart, type ChartFile, type Manifest, renderEscapedTemplate } from '../../domain/chart.ts';
import { CUSTOM_CHART_FILE, type CustomChartRef } from '../../domain/custom-chart.ts';
import type { ChartReader } from '../podman/local-runtime.ts';

/** The suffix of a file stored sealed. */
export const SEALED_SUFFIX = '.sealed';
/** Where opened copies live while a command reads them (not an id: ids start with a letter or digit). */
const OPEN_DIR = '.open';

/** A chart's files in clear on disk for as long as a command needs them; `close()` removes them. */
export interface OpenedChart {
  readonly dir: string;
  close(): Promise<void>;
}

/** The manifests in a chart's templates/, as helm would render them (only our `{{` escapes). */
export function chartManifests(files: readonly ChartFile[]): Manifest[] {
  const templates = files.filter((f) => /^templates\/[^/]+\.ya?ml$/.test(f.path));
  const manifests: Manifest[] = [];
  for (const { path: name, content } of templates) {
    const rendered = renderEscapedTemplate(name, content);
    for (const doc of parseAllDocuments(rendered)) {
      if (doc.errors.length > 0) throw new Error(`${name}: ${doc.errors[0]?.message}`);
      const value = doc.toJS() as unknown;
      if (value !== null && typeof value === 'object') manifests.push(value as Manifest);
    }
  }
  return manifests;
}

export class FsChartStore implements ChartStore, ChartReader {
  readonly root: string;
  readonly #secrets: Pick<Secrets, 'seal' | 'open' | 'activeKeyId'>;

  /** `root`: the charts directory itself (e.g. `$STAGELINE_STATE/charts`); `secrets` seals what is sensitive. */
  constructor(root: string, secrets: Pick<Secrets, 'seal' | 'open' | 'activeKeyId'>) {
    this.root = root;
    this.#secrets = secrets;
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
        if (file.sensitive === true)
          await writeFile(target + SEALED_SUFFIX, this.#secrets.seal(file.content), { mode: 0o600 });
        else await writeFile(target, file.content, { mode: 0o600 });
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

  /** The chart's files, sealed ones opened (in memory) and flagged sensitive. */
  async read(chartPath: string): Promise<ChartFile[] | undefined> {
    const files: ChartFile[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
        if (entry.isDirectory()) await walk(path.join(dir, entry.name), rel);
        else if (!entry.isFile()) continue;
        else {
          const content = await readFile(path.join(dir, entry.name), 'utf8');
          files.push(
            rel.endsWith(SEALED_SUFFIX)
              ? { path: rel.slice(0, -SEALED_SUFFIX.length), content: this.#secrets.open(content), sensitive: true }
              : { path: rel, content },
          );
        }
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
    const files = await this.read(chartPath);
    if (files === undefined) throw new Error(`chart ${chartPath} is gone`);
    return chartManifests(files);
  }

  /**
   * The chart in clear in a directory of its own (0600 files in 0700 directories) for a command that
   * reads files (helm); `close()` removes it. The stored chart is left as it is.
   */
  async open(chartPath: string): Promise<OpenedChart> {
    const files = await this.read(chartPath);
    if (files === undefined) throw new Error(`chart ${chartPath} is gone`);
    return await this.openFiles(path.basename(chartPath), files);
  }

  /** `files` in clear under `.open/<name>-<random>` (0600 in 0700) until `close()`: for charts kept elsewhere. */
  async openFiles(name: string, files: readonly ChartFile[]): Promise<OpenedChart> {
    const dir = path.join(this.root, OPEN_DIR, `${name}-${randomBytes(6).toString('hex')}`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const close = () => rm(dir, { recursive: true, force: true });
    try {
      for (const file of files) {
        const target = path.join(dir, ...file.path.split('/'));
        await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
        await writeFile(target, file.content, { mode: 0o600 });
      }
    } catch (e) {
      await close();
      throw e;
    }
    return { dir, close };
  }

  /** Removes opened copies a crash left behind (at start, before any command runs). */
  async removeOpened(): Promise<void> {
    await rm(path.join(this.root, OPEN_DIR), { recursive: true, force: true });
  }

  /**
   * Seals again, under the active key, every sealed file under an older one, and seals the Secret
   * templates an older version stored in clear. Returns how many files changed. For key rotation and
   * start-up, like the database sweeps; a file it cannot open is left as it is (it fails where used).
   */
  async reseal(): Promise<number> {
    let changed = 0;
    const walk = async (dir: string): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as { code?: string }).code === 'ENOENT') return;
        throw e;
      }
      for (const entry of entries) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) {
          if (entry.name !== OPEN_DIR) await walk(file);
          continue;
        }
        // <environment>/<service>/<revision>/templates/secret.yaml: a generated chart's Secret in clear.
        const legacy = path.relative(this.root, file).split(path.sep).length === 5 && entry.name === 'secret.yaml';
        if (!entry.isFile() || !(legacy || entry.name.endsWith(SEALED_SUFFIX))) continue;
        const r = resealValue(this.#secrets as Secrets, await readFile(file, 'utf8'));
        if (!r.changed) continue;
        const target = legacy ? file + SEALED_SUFFIX : file;
        const staging = `${target}.tmp-${randomBytes(4).toString('hex')}`;
        await writeFile(staging, r.value, { mode: 0o600 });
        await rename(staging, target);
        if (legacy) await rm(file, { force: true });
        changed++;
      }
    };
    await walk(this.root);
    return changed;
  }

  async removeService(environmentId: string, serviceId: string): Promise<void> {
    await rm(path.dirname(this.dirOf(environmentId, serviceId, 0)), { recursive: true, force: true });
  }
}
