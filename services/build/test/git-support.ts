// Real git repositories for tests: a bare repository reachable as file://, and commits written into it
// from a map of files. Commit dates are fixed, so the same files on the same parent make the same commit.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Stageline Test',
  GIT_AUTHOR_EMAIL: 'test@stageline.invalid',
  GIT_COMMITTER_NAME: 'Stageline Test',
  GIT_COMMITTER_EMAIL: 'test@stageline.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
};

export const EXAMPLE_IMAGE = process.env.EXAMPLE_IMAGE ?? '127.0.0.1:5001/examples/busybox:1.36';

function git(args: string[], cwd?: string, env: Record<string, string | undefined> = {}): string {
  return execFileSync('git', args, { cwd, env: { ...GIT_ENV, ...env }, encoding: 'utf8' }).trim();
}

export interface TestRepo {
  /** The bare repository's path. */
  path: string;
  /** file:// URL of it. */
  url: string;
  /** Replaces the branch's files with these and commits; returns the commit id. */
  commit(files: Record<string, string>, branch?: string): string;
  remove(): void;
}

let clock = 1_700_000_000;

export function createRepo(parent?: string, name = 'app'): TestRepo {
  const root = mkdtempSync(join(parent ?? tmpdir(), 'stageline-repo-'));
  const path = join(root, `${name}.git`);
  git(['init', '--quiet', '--bare', '--initial-branch=main', path]);
  return {
    path,
    url: `file://${path}`,
    commit(files, branch = 'main') {
      const work = mkdtempSync(join(root, 'work-'));
      try {
        git(['init', '--quiet', `--initial-branch=${branch}`, work]);
        const has = git(['ls-remote', path, `refs/heads/${branch}`]);
        if (has !== '') {
          git(['fetch', '--quiet', path, `refs/heads/${branch}`], work);
          git(['reset', '--quiet', '--hard', 'FETCH_HEAD'], work);
          git(['rm', '-r', '--quiet', '--ignore-unmatch', '.'], work);
        }
        for (const [file, content] of Object.entries(files)) {
          mkdirSync(dirname(join(work, file)), { recursive: true });
          writeFileSync(join(work, file), content);
        }
        git(['add', '-A'], work);
        clock += 60;
        const date = `${clock} +0000`;
        git(['commit', '--quiet', '--allow-empty', '-m', `test commit ${clock}`], work, {
          GIT_AUTHOR_DATE: date,
          GIT_COMMITTER_DATE: date,
        });
        git(['push', '--quiet', path, `HEAD:refs/heads/${branch}`], work);
        return git(['rev-parse', 'HEAD'], work);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
    remove() {
      rmSync(root, { recursive: true, force: true });
    },
  };
}
