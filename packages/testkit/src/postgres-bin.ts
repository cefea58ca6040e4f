import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { which } from './proc.ts';

/** The bin directory holding initdb and pg_ctl: the newest /usr/lib/postgresql/<v>/bin, else PATH. */
export async function findPostgresBin(env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const root = '/usr/lib/postgresql';
  const versions = await readdir(root).catch(() => [] as string[]);
  versions.sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  for (const version of versions) {
    const bin = path.join(root, version, 'bin');
    if (which('initdb', { PATH: bin }) && which('pg_ctl', { PATH: bin })) return bin;
  }
  const initdb = which('initdb', env);
  return initdb === undefined ? undefined : path.dirname(initdb);
}
