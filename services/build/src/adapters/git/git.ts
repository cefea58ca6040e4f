// Real `git`, for build jobs: fetch one commit (or a branch/tag head, resolved to its commit) into a
// fresh repository, read a file at that commit without checking anything out, then check the tree out
// only when a build actually needs it. Shallow (`--depth 1`) and, from servers that allow it, partial
// (`--filter=blob:none`): a cache hit downloads the commit's trees and one Dockerfile, not its files.
//
// Credentials never reach argv, logs or errors: usernames and passwords come from GIT_ASKPASS reading
// this process's child environment, ssh keys through GIT_SSH_COMMAND naming a key file; every line of
// git's output is redacted. Options end with `--` before any URL, and option-like values are refused.
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DomainError, invalidArgument } from '@stageline/errors';
import { minimalEnvironment, type RunOptions, type RunResult, runProcess } from '@stageline/exec';
import { type Redact, redactor } from '@stageline/secrets';
import type { GitCredentials, GitCredentialsLookup } from './credentials.ts';

export type GitRef =
  | { kind: 'commit'; commit: string }
  | { kind: 'branch'; name: string }
  | { kind: 'tag'; name: string };

export interface GitClientOptions {
  /** Where the askpass helper is written (once). */
  workDir: string;
  credentials?: GitCredentialsLookup;
  gitPath?: string;
  /** The ssh program git runs (GIT_SSH_COMMAND's first word). */
  sshProgram?: string;
  /** The environment tools inherit from (default process.env); only known names pass. */
  env?: Readonly<Record<string, string | undefined>>;
}

export interface FetchOptions {
  url: string;
  ref: GitRef;
  /** An empty directory: the repository is created in it. */
  dir: string;
  signal?: AbortSignal;
  onLine?: (line: string) => void;
}

export interface FetchedCommit {
  commit: string;
  /** The repository's git dir, for readFile and checkout. */
  gitDir: string;
}

export type FileAtCommit = { found: true; content: Buffer } | { found: false; problem: string };

const ASKPASS = `#!/bin/sh
# Stageline's GIT_ASKPASS: answers git's prompts from the environment git was started with.
case "$1" in
  Username*|username*) printf '%s\\n' "$STAGELINE_GIT_USERNAME" ;;
  *) printf '%s\\n' "$STAGELINE_GIT_PASSWORD" ;;
esac
`;

const SCP_LIKE = /^(?:[A-Za-z0-9._~-]+@)?[A-Za-z0-9.-]+:(?!\/\/)[^\s]+$/;
const FULL_COMMIT = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Safe for a POSIX shell word (GIT_SSH_COMMAND is run by a shell). */
function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export interface ParsedGitUrl {
  /** The URL git is given: no userinfo for http(s) (the username goes through askpass). */
  url: string;
  username: string | undefined;
  transport: 'http' | 'ssh' | 'file' | 'git';
}

/** INVALID_ARGUMENT for anything git could take as an option, a transport helper, or a non-URL. */
export function parseGitUrl(raw: string): ParsedGitUrl {
  if (raw === '') throw invalidArgument('service.application.git_url', 'is required');
  if (raw.startsWith('-')) throw invalidArgument('service.application.git_url', 'must not start with "-"');
  if (/[\s\p{Cc}]/u.test(raw)) throw invalidArgument('service.application.git_url', 'must not contain blanks');
  if (raw.includes('::')) throw invalidArgument('service.application.git_url', 'must not name a transport helper');
  if (SCP_LIKE.test(raw) && !/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) {
    return { url: raw, username: undefined, transport: 'ssh' };
  }
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw invalidArgument('service.application.git_url', 'is not a URL');
  }
  switch (u.protocol) {
    case 'https:':
    case 'http:': {
      const username = u.username === '' ? undefined : decodeURIComponent(u.username);
      if (u.password !== '') throw invalidArgument('service.application.git_url', 'must not embed a password');
      u.username = '';
      return { url: u.toString(), username, transport: 'http' };
    }
    case 'ssh:':
      if (u.password !== '') throw invalidArgument('service.application.git_url', 'must not embed a password');
      if (u.hostname.startsWith('-')) throw invalidArgument('service.application.git_url', 'bad host');
      return { url: raw, username: undefined, transport: 'ssh' };
    case 'git:':
      return { url: raw, username: undefined, transport: 'git' };
    case 'file:':
      if (u.host !== '') throw invalidArgument('service.application.git_url', 'file:// URLs must be local');
      return { url: raw, username: undefined, transport: 'file' };
    default:
      throw invalidArgument('service.application.git_url', `scheme ${u.protocol} is not allowed`);
  }
}

function refusedValue(value: string): boolean {
  return value === '' || value.startsWith('-') || /[\s\p{Cc}]/u.test(value) || value.includes('..');
}

export class GitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GitError';
  }
}

export class GitClient {
  readonly #options: GitClientOptions;
  readonly #git: string;
  #askpass: Promise<string> | undefined;

  constructor(options: GitClientOptions) {
    this.#options = options;
    this.#git = options.gitPath ?? 'git';
  }

  #askpassPath(): Promise<string> {
    this.#askpass ??= (async () => {
      await mkdir(this.#options.workDir, { recursive: true });
      const path = join(this.#options.workDir, 'git-askpass.sh');
      await writeFile(path, ASKPASS, { mode: 0o700 });
      await chmod(path, 0o700);
      return path;
    })();
    return this.#askpass;
  }

  /** The secrets a job must redact for this URL (its credentials), and a redactor for them. */
  secretsFor(url: string): string[] {
    const c = this.#credentials(url);
    return [c?.password].filter((v): v is string => v !== undefined);
  }

  #credentials(url: string): GitCredentials | undefined {
    return this.#options.credentials?.(url);
  }

  async #env(parsed: ParsedGitUrl, rawUrl: string): Promise<{ env: Record<string, string>; config: string[] }> {
    const env = minimalEnvironment(this.#options.env ?? process.env);
    env.LANG = 'C';
    env.GIT_TERMINAL_PROMPT = '0';
    // No ext:: or fd:: transports, whatever a URL or a redirect asks for.
    env.GIT_ALLOW_PROTOCOL = 'file:https:http:ssh:git';
    env.GIT_ASKPASS = await this.#askpassPath();
    const creds = this.#credentials(rawUrl);
    const config: string[] = [];
    const username = creds?.username ?? parsed.username;
    if (username !== undefined) env.STAGELINE_GIT_USERNAME = username;
    if (creds?.password !== undefined) {
      env.STAGELINE_GIT_PASSWORD = creds.password;
      // Our credentials only: no helper may answer instead, nor store them.
      config.push('-c', 'credential.helper=');
    }
    const ssh = [this.#options.sshProgram ?? 'ssh', '-o', 'BatchMode=yes'];
    if (creds?.sshKeyFile !== undefined) ssh.push('-i', creds.sshKeyFile, '-o', 'IdentitiesOnly=yes');
    if (creds?.knownHostsFile !== undefined) {
      ssh.push('-o', `UserKnownHostsFile=${creds.knownHostsFile}`, '-o', 'StrictHostKeyChecking=yes');
    }
    env.GIT_SSH_COMMAND = ssh.map((w, i) => (i === 0 ? w : shellQuote(w))).join(' ');
    return { env, config };
  }

  async #run(
    gitDir: string,
    args: readonly string[],
    env: Record<string, string>,
    options: Pick<RunOptions, 'signal' | 'onLine' | 'captureStdout'> = {},
  ): Promise<RunResult> {
    return runProcess({ command: this.#git, args: [`--git-dir=${gitDir}`, ...args], env, ...options });
  }

  /** Fetches the commit a ref names; returns it (full id). Failures are GitErrors with git's message, redacted. */
  async fetch(options: FetchOptions): Promise<FetchedCommit> {
    const parsed = parseGitUrl(options.url);
    const redact: Redact = redactor(this.secretsFor(options.url));
    const onLine = (line: string) => options.onLine?.(redact(line));
    const { env, config } = await this.#env(parsed, options.url);
    const gitDir = join(options.dir, 'repo.git');
    const failure = (what: string, result: RunResult): GitError => {
      const lines = result.tail.filter((l) => /^(fatal|error|remote):/i.test(l) || /denied|not found/i.test(l));
      const reason = (lines.length > 0 ? lines : result.tail.slice(-3)).join(' ').trim();
      return new GitError(redact(`${what}: ${reason || `git exited with ${result.code ?? result.signal}`}`));
    };
    const run = async (args: string[], capture = false): Promise<RunResult> => {
      const result = await this.#run(gitDir, args, env, {
        ...(options.signal ? { signal: options.signal } : {}),
        onLine,
        captureStdout: capture,
      });
      if (result.aborted) throw new GitError('git was stopped');
      return result;
    };

    let r = await runProcess({
      command: this.#git,
      args: ['init', '--quiet', '--bare', '--', gitDir],
      env,
      onLine,
    });
    if (r.code !== 0) throw failure('git init failed', r);
    r = await run(['remote', 'add', 'origin', '--', parsed.url]);
    if (r.code !== 0) throw failure('git remote add failed', r);

    // Servers that allow it send no file contents now: those come when read or checked out.
    const filter = parsed.transport === 'file' ? [] : ['--filter=blob:none'];
    const fetch = (extra: string[], refspecs: string[]) =>
      run([...config, 'fetch', '--no-tags', '--no-write-fetch-head', ...filter, ...extra, '--', 'origin', ...refspecs]);

    const ref = options.ref;
    let commit: string;
    switch (ref.kind) {
      case 'branch':
      case 'tag': {
        if (refusedValue(ref.name)) throw invalidArgument('version', `refused ${ref.kind} name`);
        const full = ref.kind === 'branch' ? `refs/heads/${ref.name}` : `refs/tags/${ref.name}`;
        r = await fetch(['--depth', '1'], [`+${full}:refs/stageline/target`]);
        if (r.code !== 0) throw failure(`cannot fetch ${ref.kind} ${ref.name}`, r);
        commit = await this.#revParse(gitDir, env, 'refs/stageline/target^{commit}', options.signal);
        break;
      }
      case 'commit': {
        if (!/^[0-9a-f]{4,64}$/.test(ref.commit)) throw invalidArgument('version', 'a commit is 4-64 hex digits');
        if (FULL_COMMIT.test(ref.commit)) {
          r = await fetch(['--depth', '1'], [`+${ref.commit}:refs/stageline/target`]);
          if (r.code === 0) {
            commit = await this.#revParse(gitDir, env, 'refs/stageline/target^{commit}', options.signal);
            break;
          }
          // Servers that refuse a fetch by id (uploadpack.allowReachableSHA1InWant off): take every branch.
          onLine('the server does not serve commits by id: fetching its branches and tags');
        }
        r = await fetch([], ['+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*']);
        if (r.code !== 0) throw failure(`cannot fetch ${options.url}`, r);
        try {
          commit = await this.#revParse(gitDir, env, `${ref.commit}^{commit}`, options.signal);
        } catch {
          throw new GitError(redact(`commit ${ref.commit} not found in ${parsed.url}`));
        }
        break;
      }
    }
    return { commit, gitDir };
  }

  async #revParse(gitDir: string, env: Record<string, string>, what: string, signal?: AbortSignal): Promise<string> {
    const r = await this.#run(gitDir, ['rev-parse', '--verify', '--quiet', '--end-of-options', what], env, {
      ...(signal ? { signal } : {}),
      captureStdout: true,
    });
    const out = r.stdout.toString().trim();
    if (r.code !== 0 || !FULL_COMMIT.test(out)) throw new GitError(`${what} does not name a commit`);
    return out;
  }

  /** A regular file's content at a commit (fetched on demand from a partial clone). */
  async readFile(fetched: FetchedCommit, url: string, path: string, signal?: AbortSignal): Promise<FileAtCommit> {
    const { env, config } = await this.#env(parseGitUrl(url), url);
    const run = (args: string[]) =>
      this.#run(fetched.gitDir, [...config, ...args], env, { ...(signal ? { signal } : {}), captureStdout: true });
    const listed = await run(['ls-tree', '-z', '--end-of-options', fetched.commit, '--', path]);
    if (listed.code !== 0) return { found: false, problem: `cannot list ${path} at ${fetched.commit}` };
    const entry = listed.stdout.toString().split('\0')[0] ?? '';
    const m = /^(\d+) (\w+) ([0-9a-f]+)\t/.exec(entry);
    if (!m) return { found: false, problem: `${path} does not exist at commit ${fetched.commit.slice(0, 12)}` };
    if (m[2] !== 'blob') return { found: false, problem: `${path} is a ${m[2]}, not a file` };
    if (m[1] === '120000') return { found: false, problem: `${path} is a symbolic link, not a file` };
    const blob = await run(['cat-file', 'blob', m[3]!]);
    if (blob.code !== 0) return { found: false, problem: `cannot read ${path} at ${fetched.commit.slice(0, 12)}` };
    return { found: true, content: blob.stdout };
  }

  /** Writes the commit's tree into `workTree` (no .git inside it: the build context stays clean). */
  async checkout(
    fetched: FetchedCommit,
    url: string,
    workTree: string,
    options: { signal?: AbortSignal; onLine?: (line: string) => void } = {},
  ): Promise<void> {
    const redact = redactor(this.secretsFor(url));
    const { env, config } = await this.#env(parseGitUrl(url), url);
    await mkdir(workTree, { recursive: true });
    const r = await this.#run(
      fetched.gitDir,
      [
        ...config,
        `--work-tree=${workTree}`,
        // The repository is bare (no .git in the build context): this one command gets a work tree.
        '-c',
        'core.bare=false',
        '-c',
        'advice.detachedHead=false',
        'checkout',
        '--quiet',
        '--force',
        '--detach',
        fetched.commit,
      ],
      env,
      {
        ...(options.signal ? { signal: options.signal } : {}),
        onLine: (line) => options.onLine?.(redact(line)),
      },
    );
    if (r.aborted) throw new GitError('git was stopped');
    if (r.code !== 0) {
      throw new GitError(redact(`checkout of ${fetched.commit.slice(0, 12)} failed: ${r.tail.slice(-3).join(' ')}`));
    }
  }
}

/** The job's `version` (the planner's resolved version) as a git ref, or the service's own commit/branch. */
export function gitRefFor(version: string, source: { commit: string; branch: string }): GitRef {
  const v = version.trim();
  const commitRef = (c: string): GitRef => {
    if (!/^[0-9a-f]{4,64}$/.test(c)) throw invalidArgument('version', `"${c}" is not a commit id`);
    return { kind: 'commit', commit: c };
  };
  if (v.startsWith('commit:')) return commitRef(v.slice(7));
  if (v.startsWith('branch:')) return branchRef(v.slice(7));
  if (v.startsWith('tag:')) {
    const name = v.slice(4);
    if (refusedValue(name)) throw invalidArgument('version', `refused tag name "${name}"`);
    return { kind: 'tag', name };
  }
  if (v.startsWith('revision:')) {
    throw new DomainError('INVALID_ARGUMENT', 'a revision is deployed from the mirror, never built', {
      field: 'version',
    });
  }
  // A bare value means a commit for APPLICATION (a tag for CONTAINER; DeployServiceRequest.version).
  if (v !== '') return commitRef(v);
  if (source.commit !== '') return commitRef(source.commit);
  return branchRef(source.branch === '' ? 'main' : source.branch);
}

function branchRef(name: string): GitRef {
  if (refusedValue(name)) throw invalidArgument('version', `refused branch name "${name}"`);
  return { kind: 'branch', name };
}

export function describeRef(ref: GitRef): string {
  switch (ref.kind) {
    case 'commit':
      return `commit ${ref.commit}`;
    case 'branch':
      return `branch ${ref.name}`;
    case 'tag':
      return `tag ${ref.name}`;
  }
}
