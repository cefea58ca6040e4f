import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, stateName, useStack, watchToEnd } from './stack.ts';

// Auto-deploy end to end (issue 15, item 5): a real git repository, real HTTPS deliveries to control's
// `/hooks/<environment_id>`, the four services building and deploying what they ask for, the git
// poller, pull-request previews, and the registry poller on the local registry.

const stack = useStack({ env: { STAGELINE_AUTO_DEPLOY_TICK_MS: '500', WORKER_ACK_WAIT_MS: '5000' } });
const { ServiceKind } = control;
const scratch = mkdtempSync(join(tmpdir(), 'stageline-e2e-auto-'));
const [EXAMPLE_REPO = '', EXAMPLE_TAG = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
const REGISTRY = EXAMPLE_REPO.split('/')[0]!;

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

// --- a git repository with two applications --------------------------------------------------------

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'e2e',
  GIT_AUTHOR_EMAIL: 'e2e@stageline.invalid',
  GIT_COMMITTER_NAME: 'e2e',
  GIT_COMMITTER_EMAIL: 'e2e@stageline.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
};
const git = (args: string[], cwd?: string) => execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8' }).trim();

const bare = join(scratch, 'repos/mono.git');
const work = join(scratch, 'work');
const repoUrl = `file://${bare}`;
const DOCKERFILE = `FROM ${EXAMPLE_IMAGE}\nCMD ["sleep", "3600"]\n`;

/** Writes the files on `branch` (created from main when new), commits, pushes; returns the commit. */
function commit(files: Record<string, string>, branch = 'main'): string {
  const current = git(['symbolic-ref', '--short', 'HEAD'], work);
  if (current !== branch) {
    const exists = git(['branch', '--list', branch], work) !== '';
    git(exists ? ['checkout', '--quiet', branch] : ['checkout', '--quiet', '-b', branch, 'main'], work);
  }
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(dirname(join(work, file)), { recursive: true });
    writeFileSync(join(work, file), content);
  }
  git(['add', '-A'], work);
  git(['commit', '--quiet', '-m', `change ${Object.keys(files).join(', ')}`], work);
  git(['push', '--quiet', bare, `HEAD:refs/heads/${branch}`], work);
  return git(['rev-parse', 'HEAD'], work);
}

// --- deliveries ------------------------------------------------------------------------------------

const caPem = () =>
  stack.security.ca.startsWith('-----') ? stack.security.ca : readFileSync(stack.security.ca, 'utf8');

/** POSTs a delivery to control's HTTPS listener; answers the status and the JSON body. */
function deliver(
  environmentId: string,
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const url = new URL(`/hooks/${environmentId}`, stack.consoleUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', ca: caPem(), headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? {} : JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const hmac = (secret: string, body: string) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** A generic push, signed with `secret` (X-Stageline-Signature). */
function genericPush(environmentId: string, secret: string, before: string, after: string, branch = 'main') {
  const body = JSON.stringify({ event: 'push', repository: repoUrl, branch, before, after });
  return deliver(environmentId, body, { 'x-stageline-signature': hmac(secret, body) });
}

async function runs(environmentId: string): Promise<control.Deployment[]> {
  const { deployments } = await callUnary(stack.deployments, 'listDeployments', {
    environmentId,
    pageSize: 500,
    pageToken: '',
  });
  return deployments;
}

const deployed = (run: control.Deployment) =>
  run.services
    .filter((s) => stateName(s.status) !== 'SKIPPED')
    .map((s) => [s.name, stateName(s.status), s.version])
    .sort();

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

// --- the environment ---------------------------------------------------------------------------------

let envId = '';
let secret = '';
let head = '';

function application(name: string, include: string[], exclude: string[]): Partial<control.Service> {
  return {
    name,
    kind: ServiceKind.SERVICE_KIND_APPLICATION,
    source: {
      $case: 'application',
      value: control.ApplicationSource.fromPartial({ gitUrl: repoUrl, branch: 'main', rootPath: `/${name}` }),
    },
    buildResources: { cpuMillis: 1000, memoryMib: 512 },
    readinessTimeoutSeconds: 60,
    autoDeploy: { enabled: true, includePaths: include, excludePaths: exclude, tagPattern: '' },
  };
}

beforeAll(async () => {
  mkdirSync(dirname(bare), { recursive: true });
  git(['init', '--quiet', '--bare', '--initial-branch=main', bare]);
  git(['init', '--quiet', '--initial-branch=main', work]);
  head = commit({ 'api/Dockerfile': DOCKERFILE, 'web/Dockerfile': DOCKERFILE, 'README.md': 'mono\n' });
  const { environment, pipeline } = await createEnvironment(stack, 'auto');
  envId = environment!.id;
  const stageId = pipeline!.stages[3]!.id;
  for (const service of [application('api', ['api/**'], ['**/*.md']), application('web', ['web/**'], [])]) {
    await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({ environmentId: envId, service: { ...service, stageId } }),
    );
  }
  const rotated = await callUnary(stack.environments, 'rotateWebhookSecret', { environmentId: envId });
  secret = rotated.secret;
  expect(rotated.path).toBe(`/hooks/${envId}`);
}, 120_000);

describe('webhooks', () => {
  it('a signed push deploys only the service whose paths changed, as the webhook identity', async () => {
    const before = head;
    head = commit({ 'api/handler.txt': 'v2\n' });
    const answer = await genericPush(envId, secret, before, head);
    expect(answer.status).toBe(202);
    expect(answer.body.services).toEqual(['api']);
    const { final } = await watchToEnd(stack, answer.body.deploymentId as string, 240_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    expect(final.requester).toBe(`webhook:${envId}`);
    expect(deployed(final)).toEqual([['api', 'DEPLOYED', `commit:${head}`]]);
  }, 300_000);

  it('a wrong signature, no signature or an unknown environment: the same 401, and nothing runs', async () => {
    const before = (await runs(envId)).length;
    const next = commit({ 'web/page.txt': 'v2\n' });
    const body = JSON.stringify({ event: 'push', repository: repoUrl, branch: 'main', before: head, after: next });
    head = next;
    const wrong = await deliver(envId, body, { 'x-stageline-signature': hmac(`${secret}-not`, body) });
    const none = await deliver(envId, body, {});
    const github = await deliver(envId, body, { 'x-github-event': 'push', 'x-hub-signature-256': hmac('guess', body) });
    const gitlab = await deliver(envId, body, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': 'guess' });
    const unknown = await deliver('0190a0a0-0000-7000-8000-000000000000', body, {
      'x-stageline-signature': hmac(secret, body),
    });
    for (const a of [wrong, none, github, gitlab, unknown]) {
      expect(a.status).toBe(401);
      expect(a.body).toEqual(wrong.body);
    }
    // A new secret: the old one stops working at once, the new one is taken.
    const old = secret;
    secret = (await callUnary(stack.environments, 'rotateWebhookSecret', { environmentId: envId })).secret;
    expect(secret).not.toBe(old);
    const stale = JSON.stringify({ event: 'ping' });
    expect((await deliver(envId, stale, { 'x-stageline-signature': hmac(old, stale) })).status).toBe(401);
    expect(await deliver(envId, stale, { 'x-stageline-signature': hmac(secret, stale) })).toEqual({
      status: 202,
      body: { ignored: 'event must be "push" or "pull_request"' },
    });
    // Too large: refused before it is read.
    const big = await deliver(envId, 'x'.repeat(1024 * 1024 + 1), { 'x-stageline-signature': 'sha256=00' });
    expect(big.status).toBe(413);
    expect((await runs(envId)).length).toBe(before);
  });

  it('a GitHub push whose commits only touch excluded paths deploys nothing', async () => {
    const before = (await runs(envId)).length;
    const previous = head;
    head = commit({ 'api/NOTES.md': 'notes\n' });
    const body = JSON.stringify({
      ref: 'refs/heads/main',
      before: previous,
      after: head,
      repository: { clone_url: repoUrl },
      commits: [{ id: head, added: ['api/NOTES.md'], modified: [], removed: [] }],
    });
    const answer = await deliver(envId, body, { 'x-github-event': 'push', 'x-hub-signature-256': hmac(secret, body) });
    expect(answer.status).toBe(202);
    expect(answer.body).toMatchObject({ ignored: 'no changed path matches an auto-deploy service', services: [] });
    // A push to a branch nobody tracks: nothing either.
    const other = await genericPush(envId, secret, '', commit({ 'api/x.txt': 'x\n' }, 'elsewhere'), 'elsewhere');
    expect(other.body.services).toEqual([]);
    expect((await runs(envId)).length).toBe(before);
  });
});

describe('the git poller', () => {
  it('picks up a new commit on the tracked branch and deploys the service it concerns', async () => {
    await callUnary(
      stack.environments,
      'updateEnvironment',
      control.UpdateEnvironmentRequest.fromPartial({
        environmentId: envId,
        settings: { autoDeploy: { pollIntervalSeconds: 10 } },
      }),
    );
    const before = new Set((await runs(envId)).map((r) => r.id));
    head = commit({ 'web/index.txt': 'polled\n' }, 'main');
    const run = await until('a polled run', async () => (await runs(envId)).find((r) => !before.has(r.id)), 120_000);
    const { final } = await watchToEnd(stack, run.id, 240_000);
    expect(final.requester).toBe(`webhook:${envId}`);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    expect(deployed(final)).toEqual([['web', 'DEPLOYED', `commit:${head}`]]);
    await callUnary(
      stack.environments,
      'updateEnvironment',
      control.UpdateEnvironmentRequest.fromPartial({
        environmentId: envId,
        settings: { autoDeploy: { pollIntervalSeconds: 0 } },
      }),
    );
  }, 360_000);
});

describe('pull-request previews', () => {
  let previewId = '';

  it('a merge request opened against the tracked branch creates a preview deploying its branch', async () => {
    // Not a preview source yet: ignored.
    const featureHead = commit({ 'api/feature.txt': 'feature\n' }, 'feature/login');
    const mr = (action: string) =>
      JSON.stringify({
        object_kind: 'merge_request',
        project: { git_http_url: repoUrl },
        object_attributes: { iid: 42, action, source_branch: 'feature/login', target_branch: 'main' },
      });
    const gitlab = { 'x-gitlab-event': 'Merge Request Hook', 'x-gitlab-token': secret };
    const refused = await deliver(envId, mr('open'), gitlab);
    expect(refused.body).toEqual({ ignored: 'the environment is not a preview source' });
    await callUnary(
      stack.environments,
      'updateEnvironment',
      control.UpdateEnvironmentRequest.fromPartial({
        environmentId: envId,
        settings: { autoDeploy: { previewSource: true } },
      }),
    );
    const answer = await deliver(envId, mr('open'), gitlab);
    expect(answer.status).toBe(202);
    previewId = answer.body.previewEnvironmentId as string;
    const { environment } = await callUnary(stack.environments, 'getEnvironment', { environmentId: previewId });
    expect(environment).toMatchObject({ name: 'auto-pr-42', preview: true, clonedFromId: envId });
    // The clone triggers nothing itself.
    expect(environment!.settings!.autoDeploy).toEqual({ pollIntervalSeconds: 0, previewSource: false });
    const { services } = await callUnary(stack.environments, 'listServices', { environmentId: previewId });
    expect(services.map((s) => (s.source?.$case === 'application' ? s.source.value.branch : ''))).toEqual([
      'feature/login',
      'feature/login',
    ]);
    const { final } = await watchToEnd(stack, answer.body.deploymentId as string, 240_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    expect(final.requester).toBe(`webhook:${envId}`);
    expect(deployed(final)).toEqual([
      ['api', 'DEPLOYED', `commit:${featureHead}`],
      ['web', 'DEPLOYED', `commit:${featureHead}`],
    ]);

    // New commits on the request: the preview is deployed again, at the new head.
    const nextHead = commit({ 'web/feature.txt': 'more\n' }, 'feature/login');
    const updated = await deliver(envId, mr('update'), gitlab);
    expect(updated.body.previewEnvironmentId).toBe(previewId);
    const again = await watchToEnd(stack, updated.body.deploymentId as string, 240_000);
    expect(runStatusName(again.final.status), again.final.message).toBe('SUCCEEDED');
    expect(deployed(again.final).map(([name, , version]) => [name, version])).toEqual([
      ['api', `commit:${nextHead}`],
      ['web', `commit:${nextHead}`],
    ]);
  }, 400_000);

  it('the pull request merged (GitHub shape): the preview is deleted', async () => {
    const body = JSON.stringify({
      action: 'closed',
      number: 42,
      pull_request: { merged: true, head: { ref: 'feature/login' }, base: { ref: 'main' } },
      repository: { clone_url: repoUrl },
    });
    const answer = await deliver(envId, body, {
      'x-github-event': 'pull_request',
      'x-hub-signature-256': hmac(secret, body),
    });
    expect(answer.status).toBe(202);
    expect(answer.body.previewEnvironmentId).toBe(previewId);
    const { final } = await watchToEnd(stack, answer.body.deploymentId as string, 240_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    const { environment } = await until('the preview deleted', async () => {
      const got = await callUnary(stack.environments, 'getEnvironment', { environmentId: previewId });
      return got.environment!.status === control.EnvironmentStatus.ENVIRONMENT_STATUS_DELETED ? got : undefined;
    });
    expect(environment!.status).toBe(control.EnvironmentStatus.ENVIRONMENT_STATUS_DELETED);
  }, 300_000);
});

describe('the registry poller', () => {
  it('a new tag matching the pattern is written to the service and deployed', async () => {
    const repo = `${REGISTRY}/e2e-auto-${Date.now().toString(36)}/box`;
    const copy = (tag: string) =>
      execFileSync('skopeo', [
        'copy',
        '--quiet',
        '--src-tls-verify=false',
        '--dest-tls-verify=false',
        `docker://${EXAMPLE_REPO}:${EXAMPLE_TAG}`,
        `docker://${repo}:${tag}`,
      ]);
    copy('1.0');
    copy('2.0');
    const { environment } = await createEnvironment(stack, 'tags', { autoDeploy: { pollIntervalSeconds: 10 } });
    const tagsEnv = environment!.id;
    const { service } = await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: tagsEnv,
        service: {
          name: 'box',
          kind: ServiceKind.SERVICE_KIND_CONTAINER,
          source: { $case: 'container', value: { image: repo, tag: '1.0', ports: [] } },
          readinessTimeoutSeconds: 60,
          autoDeploy: { enabled: true, includePaths: [], excludePaths: [], tagPattern: '1.*' },
        },
      }),
    );
    // 1.0 is the newest 1.* tag: nothing to do. Then 1.1 appears (2.0 never matches).
    copy('1.1');
    const run = await until('a run for the new tag', async () => (await runs(tagsEnv))[0], 120_000);
    const { final } = await watchToEnd(stack, run.id, 240_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    expect(final.requester).toBe(`webhook:${tagsEnv}`);
    expect(deployed(final)).toEqual([['box', 'DEPLOYED', 'tag:1.1']]);
    const { services } = await callUnary(stack.environments, 'listServices', { environmentId: tagsEnv });
    const src = services.find((s) => s.id === service!.id)!.source;
    expect(src?.$case === 'container' ? src.value.tag : '').toBe('1.1');
    expect(await runs(tagsEnv)).toHaveLength(1);
  }, 300_000);
});
