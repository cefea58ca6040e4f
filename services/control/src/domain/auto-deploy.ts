import { createHmac, timingSafeEqual } from 'node:crypto';
import { invalidArgument } from '@stageline/errors';
import type { control } from '@stageline/proto';
import { checkBranch } from './names.ts';

// Auto-deploy, decided: what a webhook delivery or a poll says happened (a push, a pull request, a new
// tag), and which services of an environment it affects. Pure: facts in, decisions out; the app
// fetches the facts (the request, git, the registry) and acts on the decisions.

export const MAX_GLOBS = 32;
export const MAX_GLOB_LENGTH = 256;
export const MIN_POLL_SECONDS = 10;
export const MAX_POLL_SECONDS = 86_400;
/** A webhook body larger than this is refused (413) before it is read further. */
export const MAX_WEBHOOK_BODY = 1024 * 1024;

/** A service's auto-deploy, as stored in its definition. */
export interface AutoDeploy {
  enabled: boolean;
  includePaths: string[];
  excludePaths: string[];
  tagPattern: string;
}

/** An environment's auto-deploy settings, as stored in its settings. */
export interface AutoDeploySettings {
  pollIntervalSeconds: number;
  previewSource: boolean;
}

export const NO_AUTO_DEPLOY_SETTINGS: AutoDeploySettings = { pollIntervalSeconds: 0, previewSource: false };

// --- validation ---------------------------------------------------------------------------------

function checkGlobs(field: string, globs: readonly string[]): string[] {
  if (globs.length > MAX_GLOBS) throw invalidArgument(field, `must list at most ${MAX_GLOBS} globs`);
  return globs.map((g, i) => {
    if (g.length === 0 || g.length > MAX_GLOB_LENGTH)
      throw invalidArgument(`${field}[${i}]`, `must be 1..${MAX_GLOB_LENGTH} characters`);
    if (/[\p{Cc}]/u.test(g)) throw invalidArgument(`${field}[${i}]`, 'must not contain control characters');
    return g.replace(/^\.?\/+/, '');
  });
}

/** A service's auto_deploy, validated (`kind`: the service's kind name). Undefined: none. */
export function normalizeAutoDeploy(
  field: string,
  kind: string,
  sourceCase: string,
  input: control.AutoDeploy | undefined,
): AutoDeploy | undefined {
  if (input === undefined) return undefined;
  const includePaths = checkGlobs(`${field}.include_paths`, input.includePaths);
  const excludePaths = checkGlobs(`${field}.exclude_paths`, input.excludePaths);
  if (input.enabled && kind === 'DATABASE')
    throw invalidArgument(`${field}.enabled`, 'a DATABASE service has no source to follow');
  if (input.tagPattern !== '') {
    if (sourceCase === 'application' || kind === 'DATABASE')
      throw invalidArgument(`${field}.tag_pattern`, 'applies to services from a container image only');
    if (input.tagPattern.length > 128 || !/^[A-Za-z0-9_.*?-]+$/.test(input.tagPattern))
      throw invalidArgument(`${field}.tag_pattern`, 'must be 1..128 of A-Z a-z 0-9 _ . - and the wildcards * ?');
  }
  return { enabled: input.enabled, includePaths, excludePaths, tagPattern: input.tagPattern };
}

/** The environment's auto-deploy settings: the request's present fields over `current`. */
export function applyAutoDeploySettings(
  input: control.AutoDeploySettings | undefined,
  current: AutoDeploySettings = NO_AUTO_DEPLOY_SETTINGS,
): AutoDeploySettings {
  if (input === undefined) return current;
  const poll = input.pollIntervalSeconds ?? current.pollIntervalSeconds;
  if (!Number.isInteger(poll) || (poll !== 0 && (poll < MIN_POLL_SECONDS || poll > MAX_POLL_SECONDS)))
    throw invalidArgument(
      'settings.auto_deploy.poll_interval_seconds',
      `must be 0 (no polling) or ${MIN_POLL_SECONDS}..${MAX_POLL_SECONDS}`,
    );
  return { pollIntervalSeconds: poll, previewSource: input.previewSource ?? current.previewSource };
}

// --- globs --------------------------------------------------------------------------------------

const globCache = new Map<string, RegExp>();

/** The glob as a regular expression over a whole path: `**` any run of characters, `*` and `?` within a name. */
export function globRegExp(glob: string): RegExp {
  let re = globCache.get(glob);
  if (re !== undefined) return re;
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      // `**/` also matches no directory at all: `a/**/b` matches `a/b`.
      if (glob[i + 2] === '/') {
        out += '(?:.*/)?';
        i += 2;
      } else {
        out += '.*';
        i += 1;
      }
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  re = new RegExp(`^${out}$`, 's');
  if (globCache.size > 1000) globCache.clear();
  globCache.set(glob, re);
  return re;
}

export function globMatches(glob: string, path: string): boolean {
  return globRegExp(glob).test(path);
}

/**
 * Whether a change to `paths` concerns a service with these globs: some path matches an include
 * (no includes: any path) and no exclude. `unknown`: the paths could not be found out, so it does.
 */
export function pathsMatch(
  auto: Pick<AutoDeploy, 'includePaths' | 'excludePaths'>,
  paths: readonly string[] | 'unknown',
): boolean {
  if (paths === 'unknown') return true;
  return paths.some(
    (p) =>
      (auto.includePaths.length === 0 || auto.includePaths.some((g) => globMatches(g, p))) &&
      !auto.excludePaths.some((g) => globMatches(g, p)),
  );
}

// --- what happened ------------------------------------------------------------------------------

export interface PushEvent {
  kind: 'push';
  /** Every URL the sender gives for the repository (clone, ssh, web); empty: not said. */
  repositories: string[];
  branch: string;
  before: string;
  after: string;
  /** Paths the payload lists as added, modified or removed; undefined when it lists none. */
  paths: string[] | undefined;
}

export interface PullRequestEvent {
  kind: 'pull_request';
  repositories: string[];
  number: number;
  /** `opened` (also reopened, ready), `updated` (new commits), `closed` (also merged). */
  action: 'opened' | 'updated' | 'closed';
  /** The request's branch, and the branch it asks to merge into. */
  branch: string;
  base: string;
}

export interface IgnoredEvent {
  kind: 'ignored';
  reason: string;
}

export type HookEvent = PushEvent | PullRequestEvent | IgnoredEvent;

export type Headers = Readonly<Record<string, string | string[] | undefined>>;

const header = (headers: Headers, name: string): string | undefined => {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
};

export type Sender = 'github' | 'gitlab' | 'generic';

export function senderOf(headers: Headers): Sender {
  if (header(headers, 'x-github-event') !== undefined) return 'github';
  if (header(headers, 'x-gitlab-event') !== undefined) return 'gitlab';
  return 'generic';
}

const hmac = (secret: string, body: Uint8Array) => createHmac('sha256', secret).update(body).digest();

/** Constant-time equality of two strings of any length (both are hashed to the same length first). */
function sameSecret(a: string, b: string): boolean {
  const key = 'stageline-compare';
  return timingSafeEqual(hmac(key, Buffer.from(a)), hmac(key, Buffer.from(b))) && a.length === b.length;
}

/**
 * Whether the delivery carries proof of `secret`: GitHub `X-Hub-Signature-256: sha256=<hex>` (HMAC-SHA256
 * of the body), GitLab `X-Gitlab-Token: <secret>`, generic `X-Stageline-Signature: sha256=<hex>`. Every
 * comparison is constant-time; the answer says nothing about which part failed.
 */
export function signatureValid(secret: string, headers: Headers, body: Uint8Array): boolean {
  if (secret === '') return false;
  const sender = senderOf(headers);
  if (sender === 'gitlab') return sameSecret(header(headers, 'x-gitlab-token') ?? '', secret);
  const given = header(headers, sender === 'github' ? 'x-hub-signature-256' : 'x-stageline-signature') ?? '';
  const expected = `sha256=${hmac(secret, body).toString('hex')}`;
  return sameSecret(given.toLowerCase(), expected);
}

/** `X-Stageline-Signature` of a generic delivery (for senders and tests). */
export function genericSignature(secret: string, body: Uint8Array | string): string {
  return `sha256=${hmac(secret, typeof body === 'string' ? Buffer.from(body) : body).toString('hex')}`;
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const strings = (...vs: unknown[]): string[] => vs.filter((v): v is string => typeof v === 'string' && v !== '');

function branchOfRef(ref: string): string | undefined {
  return ref.startsWith('refs/heads/') ? ref.slice('refs/heads/'.length) : undefined;
}

/** GitHub lists at most this many commits of a push: a push of more names only some of its paths. */
const GITHUB_COMMITS_LISTED = 20;

/** The paths a push's commits list; undefined when the list may be incomplete (git is asked instead). */
function commitPaths(commits: unknown, total?: unknown): string[] | undefined {
  if (!Array.isArray(commits) || commits.length === 0 || commits.length >= GITHUB_COMMITS_LISTED) return undefined;
  if (typeof total === 'number' && total > commits.length) return undefined;
  const paths = new Set<string>();
  for (const c of commits) {
    const commit = obj(c);
    for (const key of ['added', 'modified', 'removed']) {
      const list = commit[key];
      if (!Array.isArray(list)) return undefined;
      for (const p of list) if (typeof p === 'string') paths.add(p);
    }
  }
  return [...paths];
}

const ZERO = /^0+$/;

function push(
  repositories: string[],
  ref: string,
  before: string,
  after: string,
  paths: string[] | undefined,
): HookEvent {
  const branch = branchOfRef(ref) ?? (ref.startsWith('refs/') ? undefined : ref);
  if (branch === undefined || branch === '') return { kind: 'ignored', reason: `not a branch: ${ref.slice(0, 100)}` };
  if (checkBranch(branch) !== undefined) return { kind: 'ignored', reason: 'not a valid branch name' };
  if (ZERO.test(after)) return { kind: 'ignored', reason: 'the branch was deleted' };
  return { kind: 'push', repositories, branch, before: ZERO.test(before) ? '' : before, after, paths };
}

function pullRequest(
  repositories: string[],
  number: unknown,
  action: PullRequestEvent['action'] | undefined,
  branch: string,
  base: string,
): HookEvent {
  if (action === undefined) return { kind: 'ignored', reason: 'a pull request action that changes nothing here' };
  if (typeof number !== 'number' || !Number.isInteger(number) || number < 1 || number > 99_999_999)
    return { kind: 'ignored', reason: 'the pull request has no number' };
  if (checkBranch(branch) !== undefined || branch === '' || checkBranch(base) !== undefined || base === '')
    return { kind: 'ignored', reason: 'the pull request names no valid branches' };
  return { kind: 'pull_request', repositories, number, action, branch, base };
}

/** What a (signature-checked) delivery says happened. Anything it cannot use is `ignored`, with why. */
export function parseHookEvent(headers: Headers, payload: unknown): HookEvent {
  const body = obj(payload);
  switch (senderOf(headers)) {
    case 'github': {
      const event = header(headers, 'x-github-event');
      const repo = obj(body.repository);
      const repositories = strings(repo.clone_url, repo.ssh_url, repo.html_url, repo.git_url);
      if (event === 'push')
        return push(repositories, str(body.ref), str(body.before), str(body.after), commitPaths(body.commits));
      if (event === 'pull_request') {
        const pr = obj(body.pull_request);
        const a = str(body.action);
        const action =
          a === 'opened' || a === 'reopened' || a === 'ready_for_review'
            ? 'opened'
            : a === 'synchronize'
              ? 'updated'
              : a === 'closed'
                ? 'closed'
                : undefined;
        return pullRequest(
          repositories,
          body.number ?? pr.number,
          action,
          str(obj(pr.head).ref),
          str(obj(pr.base).ref),
        );
      }
      return { kind: 'ignored', reason: `GitHub event ${event}` };
    }
    case 'gitlab': {
      const kind = str(body.object_kind);
      const project = obj(body.project);
      const repositories = strings(project.git_http_url, project.git_ssh_url, project.web_url);
      if (kind === 'push')
        return push(
          repositories,
          str(body.ref),
          str(body.before),
          str(body.after),
          commitPaths(body.commits, body.total_commits_count),
        );
      if (kind === 'merge_request') {
        const mr = obj(body.object_attributes);
        const a = str(mr.action);
        const action =
          a === 'open' || a === 'reopen'
            ? 'opened'
            : a === 'update'
              ? 'updated'
              : a === 'close' || a === 'merge'
                ? 'closed'
                : undefined;
        return pullRequest(repositories, mr.iid, action, str(mr.source_branch), str(mr.target_branch));
      }
      return { kind: 'ignored', reason: `GitLab event ${kind}` };
    }
    case 'generic': {
      // {"event": "push", "repository": url, "branch", "before", "after", "paths": [...]}
      // {"event": "pull_request", "repository": url, "action": "opened"|"updated"|"closed", "number", "branch", "base"}
      const repositories = strings(body.repository);
      if (body.event === 'push') {
        const paths = Array.isArray(body.paths) ? body.paths.filter((p) => typeof p === 'string') : undefined;
        return push(repositories, str(body.branch), str(body.before), str(body.after), paths);
      }
      if (body.event === 'pull_request') {
        const a = str(body.action);
        const action = a === 'opened' || a === 'updated' || a === 'closed' ? a : undefined;
        return pullRequest(repositories, body.number, action, str(body.branch), str(body.base));
      }
      return { kind: 'ignored', reason: 'event must be "push" or "pull_request"' };
    }
  }
}

// --- which services -----------------------------------------------------------------------------

/** The git URL as compared between a payload and a service: no scheme, user, ".git" or trailing "/". */
export function repositoryKey(url: string): string {
  let u = url.trim();
  const scp = /^[^@/:]+@([^:/]+):(.*)$/.exec(u);
  if (scp) u = `${scp[1]}/${scp[2]}`;
  else u = u.replace(/^[a-z+]+:\/\/(?:[^@/]*@)?/i, '');
  u = u.replace(/\/+$/, '').replace(/\.git$/, '');
  const slash = u.indexOf('/');
  const host = (slash < 0 ? u : u.slice(0, slash)).toLowerCase().replace(/:(22|80|443)$/, '');
  return slash < 0 ? host : `${host}${u.slice(slash)}`;
}

/** What the decision needs of a service. */
export interface TrackedService {
  id: string;
  name: string;
  auto?: AutoDeploy;
  /** From git (APPLICATION, or a job built from one); undefined otherwise. */
  git?: { url: string; branch: string; commit: string };
}

export interface Affected {
  id: string;
  name: string;
}

/** Whether the service follows `branch` of one of `repositories` (none named: any repository). */
export function tracks(service: TrackedService, repositories: readonly string[], branch: string): boolean {
  if (!service.auto?.enabled || service.git === undefined || service.git.commit !== '') return false;
  if ((service.git.branch || 'main') !== branch) return false;
  if (repositories.length === 0) return true;
  const key = repositoryKey(service.git.url);
  return repositories.some((r) => repositoryKey(r) === key);
}

/**
 * The services a push deploys, in the order given: auto-deploy on, tracking the pushed branch of the
 * pushed repository, and a changed path matching the service's globs.
 */
export function affectedServices(
  services: readonly TrackedService[],
  event: Pick<PushEvent, 'repositories' | 'branch'>,
  paths: readonly string[] | 'unknown',
): Affected[] {
  return services
    .filter((s) => tracks(s, event.repositories, event.branch) && pathsMatch(s.auto!, paths))
    .map((s) => ({ id: s.id, name: s.name }));
}

/** Whether a pull request against `base` concerns the environment: some auto-deploy service tracks it. */
export function previewWanted(
  services: readonly TrackedService[],
  event: Pick<PullRequestEvent, 'repositories' | 'base'>,
): boolean {
  return services.some((s) => tracks(s, event.repositories, event.base));
}

/** The preview clone's name: `<env>-pr-<n>`, cut so that it stays a DNS label. */
export function previewName(environment: string, number: number): string {
  const suffix = `-pr-${number}`;
  return `${environment.slice(0, 63 - suffix.length).replace(/-+$/, '')}${suffix}`;
}

// --- tags ---------------------------------------------------------------------------------------

/** Tags compared as people read versions: numeric runs as numbers (`1.10` after `1.9`). */
export function compareTags(a: string, b: string): number {
  const pa = a.match(/\d+|\D+/g) ?? [];
  const pb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d/.test(x);
    const ny = /^\d/.test(y);
    if (nx && ny) {
      const d = BigInt(x) - BigInt(y);
      if (d !== 0n) return d < 0n ? -1 : 1;
    } else if (x !== y) return x < y ? -1 : 1;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The highest tag matching the pattern; undefined when none does. */
export function newestTag(tags: readonly string[], pattern: string): string | undefined {
  const re = globRegExp(pattern);
  let best: string | undefined;
  for (const t of tags) if (re.test(t) && (best === undefined || compareTags(t, best) > 0)) best = t;
  return best;
}
