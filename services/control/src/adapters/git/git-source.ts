import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { minimalEnvironment, runProcess } from '@stageline/exec';
import type { GitSource } from '../../app/auto-deploy-app.ts';

// git for auto-deploy, through @stageline/exec (argv, never a shell): the head of a branch
// (`git ls-remote`), and the paths changed between two commits, from a bare clone of the repository
// kept in control's state directory (`<state>/auto-deploy/<sha256 of the URL>.git`, fetched as needed).
// URLs are the services' own (already through the source policy); the app checks them again.

const HEX = /^[0-9a-f]{7,64}$/;

export class GitCli implements GitSource {
  readonly #dir: string;
  readonly #git: string;

  constructor(options: { stateDir: string; gitPath?: string }) {
    this.#dir = join(options.stateDir, 'auto-deploy');
    this.#git = options.gitPath ?? 'git';
  }

  #env(): Record<string, string> {
    const env = minimalEnvironment(process.env);
    env.LANG = 'C';
    env.GIT_TERMINAL_PROMPT = '0';
    env.GIT_ALLOW_PROTOCOL = 'file:https:http:ssh:git';
    env.GIT_SSH_COMMAND = 'ssh -o BatchMode=yes';
    return env;
  }

  async #git_(args: string[], cwd?: string) {
    const result = await runProcess({
      command: this.#git,
      args,
      env: this.#env(),
      captureStdout: true,
      ...(cwd ? { cwd } : {}),
    });
    if (result.code !== 0) throw new Error(`git ${args[0]} failed: ${result.tail.slice(-3).join(' ')}`);
    return result.stdout.toString('utf8');
  }

  async head(url: string, branch: string): Promise<string | undefined> {
    const out = await this.#git_(['ls-remote', '--heads', '--', url, `refs/heads/${branch}`]);
    const sha = out.split('\n')[0]?.split('\t')[0]?.trim() ?? '';
    return HEX.test(sha) ? sha : undefined;
  }

  /** One git command at a time per clone: two deliveries for one repository must not fetch into it at once. */
  readonly #queues = new Map<string, Promise<unknown>>();

  changedPaths(url: string, branch: string, before: string, after: string): Promise<string[] | 'unknown'> {
    const previous = this.#queues.get(url) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => this.#changedPaths(url, branch, before, after));
    const settled = next.catch(() => undefined);
    this.#queues.set(url, settled);
    void settled.then(() => {
      if (this.#queues.get(url) === settled) this.#queues.delete(url);
    });
    return next;
  }

  async #changedPaths(url: string, branch: string, before: string, after: string): Promise<string[] | 'unknown'> {
    if (!HEX.test(after) || (before !== '' && !HEX.test(before))) return 'unknown';
    await mkdir(this.#dir, { recursive: true });
    const gitDir = join(this.#dir, `${createHash('sha256').update(url).digest('hex').slice(0, 32)}.git`);
    await this.#git_(['init', '--quiet', '--bare', '--', gitDir]);
    const at = [`--git-dir=${gitDir}`];
    // The branch, deep enough to hold both commits in the usual case; without `before`, its first commit.
    await this.#git_([...at, 'fetch', '--quiet', '--no-tags', '--', url, `+refs/heads/${branch}:refs/heads/${branch}`]);
    if (before === '') {
      const out = await this.#git_([...at, 'show', '--pretty=format:', '--name-only', '--no-renames', after]);
      return out.split('\n').filter((l: string) => l !== '');
    }
    try {
      const out = await this.#git_([...at, 'diff', '--name-only', '--no-renames', before, after, '--']);
      return out.split('\n').filter((l: string) => l !== '');
    } catch {
      // `before` is not in the fetched history (a force push): nothing can be said.
      return 'unknown';
    }
  }
}
