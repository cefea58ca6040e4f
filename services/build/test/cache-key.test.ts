// The cache key's inputs and explanations (services/build/README.md), the Dockerfile's declared ARGs,
// redaction.

import { createHash, randomBytes } from 'node:crypto';
import { memorySecrets, redactor } from '@stageline/secrets';
import { describe, expect, it } from 'vitest';
import {
  buildRepository,
  cacheKey,
  explainInputs,
  imageTag,
  type KeySource,
  keyInputs,
  normalizeGitUrl,
  repositorySlug,
} from '../src/domain/cache-key.ts';
import { declaredArgs, instructions } from '../src/domain/dockerfile.ts';

const base: KeySource = {
  rootPath: '',
  dockerfilePath: 'Dockerfile',
  dockerfileContent: 'FROM busybox\nARG API_URL\n',
  target: '',
  args: [{ name: 'API_URL', value: 'https://api.staging', secret: false }],
  commit: 'a'.repeat(40),
};
const { fingerprint } = memorySecrets([{ id: 'k1', bytes: randomBytes(32) }]);
const keyOf = (s: KeySource) => cacheKey(keyInputs(s, fingerprint));

describe('declared ARGs', () => {
  it('finds every ARG, in any stage, with defaults, several per line, continued lines, any case', () => {
    const dockerfile = [
      'ARG BASE_TAG=1.36',
      'FROM busybox:$BASE_TAG AS build',
      '# ARG COMMENTED_OUT',
      'arg lower_case',
      'ARG ONE=1 TWO="two words" \\',
      '    THREE',
      'RUN echo "ARG NOT_AN_ARG"',
      'FROM build',
      'ARG  API_URL',
      '',
    ].join('\n');
    expect(declaredArgs(dockerfile)).toEqual(['API_URL', 'BASE_TAG', 'ONE', 'THREE', 'TWO', 'lower_case']);
  });

  it('honours the escape directive and skips heredoc bodies', () => {
    const dockerfile = ['# escape=`', 'FROM busybox', 'ARG A `', '  B', 'RUN <<EOF', 'ARG NOT_ME', 'EOF', 'ARG C'].join(
      '\n',
    );
    expect(declaredArgs(dockerfile)).toEqual(['A', 'B', 'C']);
    expect(instructions(dockerfile)).toContain('RUN <<EOF');
  });
});

describe('cache key', () => {
  it('is SHA-256 hex, stable, and the image tag carries all of it', () => {
    const key = keyOf(base);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(keyOf({ ...base })).toBe(key);
    expect(imageTag(key)).toBe(`build-${key}`);
  });

  it('changes with each input: root path, Dockerfile path and content, target, ARG values, commit', () => {
    const key = keyOf(base);
    const variants: KeySource[] = [
      { ...base, rootPath: 'api' },
      { ...base, dockerfilePath: 'Dockerfile.prod' },
      { ...base, dockerfileContent: `${base.dockerfileContent}RUN true\n` },
      { ...base, target: 'final' },
      { ...base, args: [{ name: 'API_URL', value: 'https://api.prod', secret: false }] },
      { ...base, args: [] },
      { ...base, commit: 'b'.repeat(40) },
    ];
    const keys = variants.map(keyOf);
    expect(keys).not.toContain(key);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('does not depend on the order ARGs come in', () => {
    const a = { name: 'A', value: '1', secret: false };
    const b = { name: 'B', value: '2', secret: false };
    expect(keyOf({ ...base, args: [a, b] })).toBe(keyOf({ ...base, args: [b, a] }));
  });

  it('keeps a secret ARG value out of the stored inputs, but not out of the key', () => {
    const secret = { ...base, args: [{ name: 'TOKEN', value: 's3cr3t-value', secret: true }] };
    const inputs = keyInputs(secret, fingerprint);
    expect(JSON.stringify(inputs)).not.toContain('s3cr3t-value');
    expect(keyOf(secret)).not.toBe(keyOf({ ...secret, args: [{ name: 'TOKEN', value: 'other', secret: true }] }));
  });

  it('stores a secret ARG by a keyed fingerprint, never a bare digest that a guess could be checked against', () => {
    const secret = { ...base, args: [{ name: 'TOKEN', value: 's3cr3t-value', secret: true }] };
    const [token] = keyInputs(secret, fingerprint).filter((i) => i.name === 'arg:TOKEN');
    const bare = createHash('sha256').update('s3cr3t-value').digest('hex');
    expect(token!.digest).toMatch(/^hmac-sha256:k1:[0-9a-f]{64}$/);
    expect(token!.digest).not.toContain(bare);
    // Equal under the same key (a cache hit), different under another one: a rotation rebuilds once, and says why.
    expect(keyInputs(secret, fingerprint)).toEqual(keyInputs(secret, fingerprint));
    const rotated = memorySecrets([{ id: 'k2', bytes: randomBytes(32) }]).fingerprint;
    const changes = explainInputs(keyInputs(secret, rotated), keyInputs(secret, fingerprint)).filter((c) => c.changed);
    expect(changes.map((c) => c.detail)).toEqual([
      expect.stringContaining('fingerprinted under another key (k1 → k2: a key rotation)'),
    ]);
  });
});

describe('explanations', () => {
  it('names a changed ARG, with both values, as environment-specific', () => {
    const before = keyInputs(base, fingerprint);
    const after = keyInputs(
      { ...base, args: [{ name: 'API_URL', value: 'https://api.prod', secret: false }] },
      fingerprint,
    );
    const changes = explainInputs(after, before).filter((c) => c.changed);
    expect(changes).toHaveLength(1);
    expect(changes[0]!.name).toBe('arg:API_URL');
    expect(changes[0]!.detail).toBe(
      'ARG `API_URL` differs: `https://api.staging` → `https://api.prod`: environment-specific ARG values rebuild per environment',
    );
  });

  it('names a new commit, an ARG that appeared or vanished; nothing changed when all is equal', () => {
    const before = keyInputs(base, fingerprint);
    expect(explainInputs(before, before).some((c) => c.changed)).toBe(false);
    const moved = explainInputs(keyInputs({ ...base, commit: 'c'.repeat(40) }, fingerprint), before).filter(
      (c) => c.changed,
    );
    expect(moved.map((c) => c.detail)).toEqual([`new commit: \`${'a'.repeat(12)}\` → \`${'c'.repeat(12)}\``]);
    const none = explainInputs(keyInputs({ ...base, args: [] }, fingerprint), before).filter((c) => c.changed);
    expect(none.map((c) => c.detail)).toEqual([
      'ARG `API_URL` is no longer set from the environment (was `https://api.staging`)',
    ]);
    const back = explainInputs(before, keyInputs({ ...base, args: [] }, fingerprint)).filter((c) => c.changed);
    expect(back.map((c) => c.detail)).toEqual(['ARG `API_URL` is now set from the environment: `https://api.staging`']);
  });

  it('never shows a secret value', () => {
    const s = (value: string) => keyInputs({ ...base, args: [{ name: 'TOKEN', value, secret: true }] }, fingerprint);
    const text = JSON.stringify(explainInputs(s('new-secret-1'), s('old-secret-2')));
    expect(text).toContain('ARG `TOKEN` differs: its secret value changed');
    expect(text).not.toMatch(/new-secret-1|old-secret-2/);
  });
});

describe('mirror repository names', () => {
  it('one repository per git repository, whatever the spelling of its URL', () => {
    expect(normalizeGitUrl('https://user@GitHub.com/Acme/API.git/')).toBe('https://github.com/Acme/API');
    expect(normalizeGitUrl('git@github.com:Acme/API.git')).toBe('ssh://github.com/Acme/API');
    expect(repositorySlug('https://github.com/acme/api.git')).toBe(repositorySlug('https://github.com/acme/api'));
    expect(repositorySlug('https://github.com/acme/api')).toMatch(/^api-[0-9a-f]{8}$/);
    expect(repositorySlug('https://github.com/acme/api')).not.toBe(repositorySlug('https://github.com/other/api'));
    expect(buildRepository('My Project', 'file:///srv/repos/api.git')).toMatch(/^my-project\/api-[0-9a-f]{8}$/);
  });
});

describe('redaction', () => {
  it('removes secret values and URL passwords', () => {
    const redact = redactor(['hunter22', undefined, 'ab']);
    expect(redact('token hunter22 in https://ci:pa55word@git.example.com/x.git')).toBe(
      'token *** in https://ci:***@git.example.com/x.git',
    );
    // Too short to be a secret worth blanking out every occurrence of.
    expect(redact('ab')).toBe('ab');
  });
});
