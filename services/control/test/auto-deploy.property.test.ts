import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  affectedServices,
  applyAutoDeploySettings,
  compareTags,
  genericSignature,
  globMatches,
  newestTag,
  normalizeAutoDeploy,
  parseHookEvent,
  pathsMatch,
  previewName,
  repositoryKey,
  signatureValid,
  type TrackedService,
} from '../src/domain/auto-deploy.ts';

// Auto-deploy's decisions: which services a push affects, signatures, payload shapes, tags.

const segment = fc.stringMatching(/^[a-z0-9_.-]{1,8}$/).filter((s) => s !== '.' && s !== '..');
const path = fc.array(segment, { minLength: 1, maxLength: 4 }).map((p) => p.join('/'));
const paths = fc.array(path, { minLength: 1, maxLength: 6 });

const service = (id: string, over: Partial<TrackedService> = {}): TrackedService => ({
  id,
  name: id,
  auto: { enabled: true, includePaths: [], excludePaths: [], tagPattern: '' },
  git: { url: 'https://git.example.com/team/app.git', branch: 'main', commit: '' },
  ...over,
});

describe('globs', () => {
  it('a path matches its own text, `**` matches any path, `*` stays within a name', () => {
    fc.assert(
      fc.property(path, (p) => {
        expect(globMatches(p, p)).toBe(true);
        expect(globMatches('**', p)).toBe(true);
        expect(globMatches('*', p)).toBe(!p.includes('/'));
        const [first] = p.split('/');
        expect(globMatches(`${first}/**`, p)).toBe(p.includes('/'));
        expect(globMatches(`**/${p.split('/').at(-1)}`, p)).toBe(true);
      }),
    );
  });

  it('examples', () => {
    expect(globMatches('api/**/*.ts', 'api/src/a.ts')).toBe(true);
    expect(globMatches('api/**/*.ts', 'api/a.ts')).toBe(true);
    expect(globMatches('api/**/*.ts', 'web/a.ts')).toBe(false);
    expect(globMatches('docs/?.md', 'docs/a.md')).toBe(true);
    expect(globMatches('docs/?.md', 'docs/ab.md')).toBe(false);
    expect(globMatches('a.b', 'axb')).toBe(false);
  });
});

describe('which services a push affects', () => {
  it('no globs: any change; an exclude matching every changed path: none; excludes win over includes', () => {
    fc.assert(
      fc.property(paths, (changed) => {
        expect(pathsMatch({ includePaths: [], excludePaths: [] }, changed)).toBe(true);
        expect(pathsMatch({ includePaths: [], excludePaths: changed }, changed)).toBe(false);
        expect(pathsMatch({ includePaths: ['**'], excludePaths: ['**'] }, changed)).toBe(false);
        expect(pathsMatch({ includePaths: changed.slice(0, 1), excludePaths: [] }, changed)).toBe(true);
        // Unknown paths (git could not tell): deployed, whatever the globs.
        expect(pathsMatch({ includePaths: ['nothing/*'], excludePaths: ['**'] }, 'unknown')).toBe(true);
      }),
    );
  });

  it('a service is affected iff enabled, tracking the branch and repository, not pinned, and a path matches', () => {
    const arb = fc.record({
      enabled: fc.boolean(),
      branch: fc.constantFrom('main', 'dev', ''),
      pinned: fc.boolean(),
      otherRepo: fc.boolean(),
      include: fc.constantFrom<string[]>([], ['api/**'], ['web/**']),
      exclude: fc.constantFrom<string[]>([], ['**/*.md']),
    });
    fc.assert(
      fc.property(fc.array(arb, { maxLength: 6 }), fc.constantFrom('main', 'dev'), paths, (specs, pushed, changed) => {
        const services = specs.map((s, i) =>
          service(`s${i}`, {
            auto: { enabled: s.enabled, includePaths: s.include, excludePaths: s.exclude, tagPattern: '' },
            git: {
              url: s.otherRepo ? 'git@git.example.com:team/other.git' : 'git@git.example.com:team/app.git',
              branch: s.branch,
              commit: s.pinned ? 'abcdef1' : '',
            },
          }),
        );
        const got = affectedServices(
          services,
          { repositories: ['https://git.example.com/team/app'], branch: pushed },
          changed,
        );
        const expected = specs.flatMap((s, i) => {
          const ok =
            s.enabled &&
            !s.pinned &&
            !s.otherRepo &&
            (s.branch || 'main') === pushed &&
            changed.some(
              (p) =>
                (s.include.length === 0 || s.include.some((g) => globMatches(g, p))) &&
                !s.exclude.some((g) => globMatches(g, p)),
            );
          return ok ? [`s${i}`] : [];
        });
        expect(got.map((a) => a.id)).toEqual(expected);
        // A payload that names no repository concerns every repository.
        const anyRepo = affectedServices(services, { repositories: [], branch: pushed }, changed).map((a) => a.id);
        for (const id of expected) expect(anyRepo).toContain(id);
      }),
    );
  });

  it('a service without a git source (container, database) is never affected by a push', () => {
    const { git: _, ...image } = service('img');
    expect(affectedServices([image], { repositories: [], branch: 'main' }, ['a'])).toEqual([]);
  });

  it('repository URLs compare across https, ssh, scp-like and .git forms', () => {
    const key = repositoryKey('https://git.example.com/team/app.git');
    for (const u of [
      'git@git.example.com:team/app.git',
      'ssh://git@git.example.com/team/app',
      'https://user@GIT.example.com/team/app/',
      'http://git.example.com:80/team/app',
    ])
      expect(repositoryKey(u)).toBe(key);
    expect(repositoryKey('https://git.example.com/team/other')).not.toBe(key);
    expect(repositoryKey('file:///tmp/x/repo.git')).toBe(repositoryKey('file:///tmp/x/repo'));
  });
});

describe('signatures', () => {
  it('the right HMAC passes; any other body, secret or signature fails', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.uint8Array(), fc.uint8Array(), (secret, body, other) => {
        const gh = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
        expect(signatureValid(secret, { 'x-github-event': 'push', 'x-hub-signature-256': gh }, body)).toBe(true);
        expect(signatureValid(secret, { 'x-stageline-signature': genericSignature(secret, body) }, body)).toBe(true);
        expect(signatureValid(secret, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': secret }, body)).toBe(true);
        if (Buffer.compare(Buffer.from(body), Buffer.from(other)) !== 0)
          expect(signatureValid(secret, { 'x-github-event': 'push', 'x-hub-signature-256': gh }, other)).toBe(false);
        expect(signatureValid(`${secret}x`, { 'x-stageline-signature': genericSignature(secret, body) }, body)).toBe(
          false,
        );
        expect(signatureValid(secret, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': `${secret}x` }, body)).toBe(
          false,
        );
        expect(signatureValid(secret, {}, body)).toBe(false);
        // No secret set: nothing passes, not even an empty signature.
        expect(signatureValid('', { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': '' }, body)).toBe(false);
      }),
    );
  });
});

describe('payloads', () => {
  it('GitHub push: branch, commits and the paths of every commit', () => {
    const event = parseHookEvent(
      { 'x-github-event': 'push' },
      {
        ref: 'refs/heads/main',
        before: 'a'.repeat(40),
        after: 'b'.repeat(40),
        repository: { clone_url: 'https://github.com/o/r.git', ssh_url: 'git@github.com:o/r.git' },
        commits: [
          { added: ['api/a.ts'], modified: [], removed: [] },
          { added: [], modified: ['README.md'], removed: ['old'] },
        ],
      },
    );
    expect(event).toEqual({
      kind: 'push',
      repositories: ['https://github.com/o/r.git', 'git@github.com:o/r.git'],
      branch: 'main',
      before: 'a'.repeat(40),
      after: 'b'.repeat(40),
      paths: ['api/a.ts', 'README.md', 'old'],
    });
  });

  it('a push listing 20 commits or fewer than it has: paths unknown (git is asked)', () => {
    const commit = { added: ['a'], modified: [], removed: [] };
    const github = parseHookEvent(
      { 'x-github-event': 'push' },
      { ref: 'refs/heads/main', after: 'b'.repeat(40), commits: Array.from({ length: 20 }, () => commit) },
    );
    expect(github).toMatchObject({ kind: 'push', paths: undefined });
    const gitlab = parseHookEvent(
      { 'x-gitlab-event': 'Push Hook' },
      {
        object_kind: 'push',
        ref: 'refs/heads/main',
        after: 'b'.repeat(40),
        commits: [commit],
        total_commits_count: 30,
      },
    );
    expect(gitlab).toMatchObject({ kind: 'push', paths: undefined });
  });

  it('GitLab merge request and GitHub pull request actions', () => {
    const mr = (action: string) =>
      parseHookEvent(
        { 'x-gitlab-event': 'Merge Request Hook' },
        {
          object_kind: 'merge_request',
          project: { git_http_url: 'https://gitlab.com/o/r.git' },
          object_attributes: { iid: 7, action, source_branch: 'feature/x', target_branch: 'main' },
        },
      );
    expect(mr('open')).toMatchObject({
      kind: 'pull_request',
      action: 'opened',
      number: 7,
      branch: 'feature/x',
      base: 'main',
    });
    expect(mr('merge')).toMatchObject({ kind: 'pull_request', action: 'closed' });
    expect(mr('approved').kind).toBe('ignored');
    const pr = parseHookEvent(
      { 'x-github-event': 'pull_request' },
      { action: 'synchronize', number: 3, pull_request: { head: { ref: 'fix' }, base: { ref: 'main' } } },
    );
    expect(pr).toMatchObject({ kind: 'pull_request', action: 'updated', number: 3, branch: 'fix', base: 'main' });
  });

  it('anything else is ignored with a reason, never thrown', () => {
    fc.assert(
      fc.property(
        fc.anything(),
        fc.constantFrom({}, { 'x-github-event': 'push' }, { 'x-gitlab-event': 'x' }),
        (body, headers) => {
          const event = parseHookEvent(headers, body);
          expect(['push', 'pull_request', 'ignored']).toContain(event.kind);
        },
      ),
    );
    expect(parseHookEvent({}, { event: 'push', branch: 'main', after: '0'.repeat(40) }).kind).toBe('ignored');
    expect(parseHookEvent({ 'x-github-event': 'push' }, { ref: 'refs/tags/v1', after: 'b'.repeat(40) }).kind).toBe(
      'ignored',
    );
    expect(parseHookEvent({}, { event: 'push', branch: '-x', after: 'b'.repeat(40) }).kind).toBe('ignored');
  });
});

describe('validation, names and tags', () => {
  it('fields at fault are named', () => {
    const bad = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as { field?: string }).field;
      }
      return undefined;
    };
    const auto = { enabled: true, includePaths: [], excludePaths: [], tagPattern: '' };
    expect(
      bad(() =>
        normalizeAutoDeploy('service.auto_deploy', 'APPLICATION', 'application', { ...auto, includePaths: [''] }),
      ),
    ).toBe('service.auto_deploy.include_paths[0]');
    expect(
      bad(() =>
        normalizeAutoDeploy('service.auto_deploy', 'APPLICATION', 'application', { ...auto, tagPattern: 'v*' }),
      ),
    ).toBe('service.auto_deploy.tag_pattern');
    expect(
      bad(() => normalizeAutoDeploy('service.auto_deploy', 'CONTAINER', 'container', { ...auto, tagPattern: 'a b' })),
    ).toBe('service.auto_deploy.tag_pattern');
    expect(bad(() => applyAutoDeploySettings({ pollIntervalSeconds: 5 }))).toBe(
      'settings.auto_deploy.poll_interval_seconds',
    );
    expect(applyAutoDeploySettings({ previewSource: true }, { pollIntervalSeconds: 60, previewSource: false })).toEqual(
      {
        pollIntervalSeconds: 60,
        previewSource: true,
      },
    );
  });

  it('a preview name is a DNS label ending in -pr-<n>', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/),
        fc.integer({ min: 1, max: 99_999_999 }),
        (name, n) => {
          const p = previewName(name, n);
          expect(p.length).toBeLessThanOrEqual(63);
          expect(p.endsWith(`-pr-${n}`)).toBe(true);
          expect(p).toMatch(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/);
        },
      ),
    );
  });

  it('the newest tag compares numbers as numbers and honours the pattern', () => {
    expect(newestTag(['1.9', '1.10', '1.2', '2.0-rc', 'latest'], '1.*')).toBe('1.10');
    expect(newestTag(['latest'], '1.*')).toBeUndefined();
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[0-9a-z.]{1,8}$/), { minLength: 1 }), (tags) => {
        const best = newestTag(tags, '*')!;
        for (const t of tags) expect(compareTags(best, t)).toBeGreaterThanOrEqual(0);
      }),
    );
  });
});
