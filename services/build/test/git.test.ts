// The git adapter with real git: file://, https:// (git http-backend behind basic auth and a
// self-signed certificate) and ssh:// (through an ssh stand-in that runs git-upload-pack locally).
// Credentials reach git through GIT_ASKPASS and GIT_SSH_COMMAND, never argv; errors carry git's
// message without them; option-like values are refused before git runs.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialsLookup } from '../src/adapters/git/credentials.ts';
import { GitClient, GitError, gitRefFor, parseGitUrl } from '../src/adapters/git/git.ts';
import { createRepo, type TestRepo } from './git-support.ts';

const scratch = mkdtempSync(join(tmpdir(), 'stageline-git-test-'));
let repo: TestRepo;
let first: string;
let second: string;

beforeAll(() => {
  repo = createRepo(scratch, 'api');
  first = repo.commit({ Dockerfile: 'FROM scratch\n', 'app/main.txt': 'one\n' });
  second = repo.commit({ Dockerfile: 'FROM scratch\nARG X\n', 'app/main.txt': 'two\n' });
  execFileSync('git', ['--git-dir', repo.path, 'tag', 'v1', first]);
});

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

let jobs = 0;
const jobDir = () => mkdtempSync(join(scratch, `job-${jobs++}-`));

describe('file:// repositories', () => {
  const git = new GitClient({ workDir: join(scratch, 'work') });

  it('resolves a branch to its head, and reads a file at that commit without a checkout', async () => {
    const lines: string[] = [];
    const fetched = await git.fetch({
      url: repo.url,
      ref: { kind: 'branch', name: 'main' },
      dir: jobDir(),
      onLine: (l) => lines.push(l),
    });
    expect(fetched.commit).toBe(second);
    const file = await git.readFile(fetched, repo.url, 'Dockerfile');
    expect(file.found && file.content.toString()).toBe('FROM scratch\nARG X\n');
    expect(await git.readFile(fetched, repo.url, 'missing/Dockerfile')).toEqual({
      found: false,
      problem: `missing/Dockerfile does not exist at commit ${second.slice(0, 12)}`,
    });
  });

  it('fetches an older commit by full or abbreviated id, and a tag', async () => {
    for (const ref of [
      { kind: 'commit', commit: first },
      { kind: 'commit', commit: first.slice(0, 9) },
      { kind: 'tag', name: 'v1' },
    ] as const) {
      const fetched = await git.fetch({ url: repo.url, ref, dir: jobDir() });
      expect(fetched.commit, JSON.stringify(ref)).toBe(first);
    }
  });

  it('checks a commit out into a work tree without .git in it', async () => {
    const dir = jobDir();
    const fetched = await git.fetch({ url: repo.url, ref: { kind: 'commit', commit: first }, dir });
    await git.checkout(fetched, repo.url, join(dir, 'src'));
    expect(readdirSync(join(dir, 'src')).sort()).toEqual(['Dockerfile', 'app']);
    expect(readFileSync(join(dir, 'src/app/main.txt'), 'utf8')).toBe('one\n');
  });

  it("fails with git's own message for a missing branch or commit", async () => {
    await expect(git.fetch({ url: repo.url, ref: { kind: 'branch', name: 'nope' }, dir: jobDir() })).rejects.toThrow(
      /cannot fetch branch nope: .*couldn't find remote ref refs\/heads\/nope/,
    );
    await expect(
      git.fetch({ url: repo.url, ref: { kind: 'commit', commit: 'deadbeef' }, dir: jobDir() }),
    ).rejects.toThrow(/commit deadbeef not found/);
    await expect(
      git.fetch({ url: `file://${scratch}/nothing-here.git`, ref: { kind: 'branch', name: 'main' }, dir: jobDir() }),
    ).rejects.toBeInstanceOf(GitError);
  });
});

describe('refused before git runs', () => {
  it('option-like or odd URLs and refs', () => {
    for (const url of ['--upload-pack=touch /tmp/x', 'ext::sh -c touch% /tmp/x', 'https://h/x y', 'ftp://h/x']) {
      expect(() => parseGitUrl(url), url).toThrow(/git_url/);
    }
    expect(() => parseGitUrl('https://u:p@h/x')).toThrow(/password/);
    expect(() => gitRefFor('branch:--upload-pack=x', { commit: '', branch: '' })).toThrow(/refused branch/);
    expect(() => gitRefFor('tag:-x', { commit: '', branch: '' })).toThrow(/refused tag/);
    expect(() => gitRefFor('commit:xyz', { commit: '', branch: '' })).toThrow(/not a commit/);
    expect(gitRefFor('', { commit: '', branch: '' })).toEqual({ kind: 'branch', name: 'main' });
    expect(gitRefFor('', { commit: 'abc1234', branch: 'dev' })).toEqual({ kind: 'commit', commit: 'abc1234' });
    expect(gitRefFor('abc1234', { commit: '', branch: 'dev' })).toEqual({ kind: 'commit', commit: 'abc1234' });
    expect(gitRefFor('branch:release/1.2', { commit: '', branch: 'dev' })).toEqual({
      kind: 'branch',
      name: 'release/1.2',
    });
  });

  it('a username in an https URL goes to askpass, not argv', () => {
    expect(parseGitUrl('https://ghp_token@git.example.com/a/b.git')).toEqual({
      url: 'https://git.example.com/a/b.git',
      username: 'ghp_token',
      transport: 'http',
    });
  });
});

// --- https:// behind basic auth ---------------------------------------------------------------

const USER = 'ci-user';
const PASSWORD = 'pw-9f3c1e77a2b84d0c';

interface HttpsGitServer {
  url: string;
  caFile: string;
  requests: Array<{ authorized: boolean }>;
  close(): Promise<void>;
}

/** git http-backend (CGI) behind Node's https server, which asks for basic credentials. */
async function startHttpsGitServer(root: string): Promise<HttpsGitServer> {
  const keyFile = join(scratch, 'tls.key');
  const caFile = join(scratch, 'tls.crt');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      caFile,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const expected = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
  const requests: HttpsGitServer['requests'] = [];
  const server = https.createServer({ key: readFileSync(keyFile), cert: readFileSync(caFile) }, (req, res) => {
    const authorized = req.headers.authorization === expected;
    requests.push({ authorized });
    if (!authorized) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' });
      res.end();
      return;
    }
    const url = new URL(req.url ?? '/', 'https://x');
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
        GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
        REMOTE_USER: USER,
        REMOTE_ADDR: '127.0.0.1',
      },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let sent = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (sent) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of head.subarray(0, end).toString().split('\r\n')) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') status = Number(value.split(' ')[0]);
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
      sent = true;
    });
    cgi.stdout.on('end', () => res.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    caFile,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Every command line on the machine, sampled until stopped (what `ps` would show). */
function watchCommandLines(): { stop(): string[] } {
  const seen = new Set<string>();
  const timer = setInterval(() => {
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
        if (cmdline.includes('git') || cmdline.includes('ssh')) seen.add(cmdline);
      } catch {
        // Gone already.
      }
    }
  }, 2);
  return {
    stop() {
      clearInterval(timer);
      return [...seen];
    },
  };
}

describe('https:// with credentials', () => {
  let server: HttpsGitServer;
  const root = join(scratch, 'https-root');

  beforeAll(async () => {
    execFileSync('mkdir', ['-p', root]);
    execFileSync('git', ['clone', '--quiet', '--bare', repo.path, join(root, 'team/api.git')]);
    server = await startHttpsGitServer(root);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('authenticates through askpass; the password is in no command line, log line or error', async () => {
    const url = `${server.url}/team/api.git`;
    const git = new GitClient({
      workDir: join(scratch, 'work-https'),
      credentials: credentialsLookup([{ prefix: `${server.url}/team`, username: USER, password: PASSWORD }]),
      env: { ...process.env, GIT_SSL_CAINFO: server.caFile },
    });
    const lines: string[] = [];
    const watch = watchCommandLines();
    const fetched = await git.fetch({
      url,
      ref: { kind: 'branch', name: 'main' },
      dir: jobDir(),
      onLine: (l) => lines.push(l),
    });
    const file = await git.readFile(fetched, url, 'Dockerfile');
    const commandLines = watch.stop();
    expect(fetched.commit).toBe(second);
    expect(file.found).toBe(true);
    expect(server.requests.some((r) => r.authorized)).toBe(true);
    expect(commandLines.some((c) => c.includes('fetch'))).toBe(true);
    expect(commandLines.filter((c) => c.includes(PASSWORD))).toEqual([]);
    expect(lines.join('\n')).not.toContain(PASSWORD);
    expect(git.secretsFor(url)).toEqual([PASSWORD]);
  });

  it('wrong credentials: an authentication error, without the password', async () => {
    const url = `${server.url}/team/api.git`;
    const wrong = 'wrong-pw-0c7e5d';
    const git = new GitClient({
      workDir: join(scratch, 'work-https'),
      credentials: credentialsLookup([{ prefix: server.url, username: USER, password: wrong }]),
      env: { ...process.env, GIT_SSL_CAINFO: server.caFile },
    });
    const error = await git.fetch({ url, ref: { kind: 'branch', name: 'main' }, dir: jobDir() }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(GitError);
    expect(error?.message).toMatch(/Authentication failed/);
    expect(error?.message).not.toContain(wrong);
  });

  it('no credentials: git does not prompt, it fails', async () => {
    const git = new GitClient({
      workDir: join(scratch, 'work-https'),
      env: { ...process.env, GIT_SSL_CAINFO: server.caFile },
    });
    await expect(
      git.fetch({ url: `${server.url}/team/api.git`, ref: { kind: 'branch', name: 'main' }, dir: jobDir() }),
    ).rejects.toThrow(/cannot fetch branch main/);
  });
});

describe('ssh:// with a key', () => {
  it('runs ssh with the key file and known hosts of the matching entry, in batch mode', async () => {
    const bin = mkdtempSync(join(scratch, 'bin-'));
    const argvLog = join(bin, 'argv.log');
    // Stands in for OpenSSH: records its arguments, then runs the remote command here.
    writeFileSync(
      join(bin, 'ssh'),
      `#!/bin/sh
printf '%s\\n' "$*" >> '${argvLog}'
[ "$1" = "-G" ] && exit 0
while [ $# -gt 0 ]; do
  case "$1" in
    -o|-i|-p|-l) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
shift
exec sh -c "$*"
`,
    );
    chmodSync(join(bin, 'ssh'), 0o755);
    const keyFile = join(bin, 'id_deploy');
    writeFileSync(keyFile, 'not a real key\n', { mode: 0o600 });
    const git = new GitClient({
      workDir: join(scratch, 'work-ssh'),
      sshProgram: join(bin, 'ssh'),
      credentials: credentialsLookup([
        { prefix: 'ssh://git.example.test', sshKeyFile: keyFile, knownHostsFile: join(bin, 'known_hosts') },
      ]),
    });
    const fetched = await git.fetch({
      url: `ssh://git@git.example.test${repo.path}`,
      ref: { kind: 'branch', name: 'main' },
      dir: jobDir(),
    });
    expect(fetched.commit).toBe(second);
    const calls = readFileSync(argvLog, 'utf8');
    expect(calls).toContain(`-i ${keyFile}`);
    expect(calls).toContain('IdentitiesOnly=yes');
    expect(calls).toContain('BatchMode=yes');
    expect(calls).toContain(`UserKnownHostsFile=${join(bin, 'known_hosts')}`);
    expect(calls).toMatch(/git@git\.example\.test .*git-upload-pack/);
  });
});
