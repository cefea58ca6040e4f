import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { callUnary, connect } from '@stageline/grpc';
import { build, control, deploy } from '@stageline/proto';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createEnvironment,
  EXAMPLE_IMAGE,
  runStatusName,
  type ServiceName,
  type Stack,
  stateName,
  useStack,
  watchToEnd,
} from './stack.ts';

// APPLICATION services end to end: the four services as processes, real git (file:// and http:// with
// credentials), buildah, the mirror registry and podman. What is built when, what the cache hits and
// why, identical builds shared, failures, secrets, and a build worker killed in the middle of a build.

const { StepKind, StepOutcome, ServiceKind } = control;
const scratch = mkdtempSync(join(tmpdir(), 'stageline-e2e-build-'));
// buildah's layer cache outlives test runs: a label unique to this run makes every RUN step run again.
const RUN_LABEL = `LABEL stageline.e2e.run=${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;

// --- git repositories --------------------------------------------------------------------------

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'e2e',
  GIT_AUTHOR_EMAIL: 'e2e@stageline.invalid',
  GIT_COMMITTER_NAME: 'e2e',
  GIT_COMMITTER_EMAIL: 'e2e@stageline.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
};
const git = (args: string[], cwd?: string) => execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8' }).trim();

/** A bare repository at `path`; `commit(files)` replaces main's files and returns the new commit. */
function repository(path: string) {
  mkdirSync(dirname(path), { recursive: true });
  git(['init', '--quiet', '--bare', '--initial-branch=main', path]);
  let n = 0;
  return {
    url: `file://${path}`,
    commit(files: Record<string, string>): string {
      const work = mkdtempSync(join(scratch, 'work-'));
      try {
        git(['init', '--quiet', '--initial-branch=main', work]);
        for (const [file, content] of Object.entries(files)) {
          mkdirSync(dirname(join(work, file)), { recursive: true });
          writeFileSync(join(work, file), content);
        }
        git(['add', '-A'], work);
        git(['commit', '--quiet', '-m', `commit ${++n}`], work);
        git(['push', '--quiet', '--force', path, 'HEAD:refs/heads/main'], work);
        return git(['rev-parse', 'HEAD'], work);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
  };
}

// --- a git server over http:// that wants credentials ------------------------------------------

const GIT_USER = 'e2e-bot';
const GIT_PASSWORD = 'gitpw-7d1e0c93b5a24f68';
const gitRoot = join(scratch, 'http-root');

/** `git http-backend` (CGI) behind basic auth: repositories under `gitRoot`. */
async function startGitHttpServer(): Promise<{ url: string; close(): Promise<void> }> {
  const expected = `Basic ${Buffer.from(`${GIT_USER}:${GIT_PASSWORD}`).toString('base64')}`;
  const server = http.createServer((req, res) => {
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' });
      res.end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: gitRoot,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
        GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
        REMOTE_USER: GIT_USER,
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
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString().split('\r\n')) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim();
        if (name.toLowerCase() === 'status')
          status = Number(
            line
              .slice(colon + 1)
              .trim()
              .split(' ')[0],
          );
        else headers[name] = line.slice(colon + 1).trim();
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
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const gitServer = await startGitHttpServer();
const WRONG_PASSWORD = 'wrongpw-51c0b2e9aa';
// The build workers' credentials: the right ones for /team, wrong ones for /wrong.
const credentialsFile = join(scratch, 'git-credentials.json');
writeFileSync(
  credentialsFile,
  JSON.stringify({
    git: [
      { url: `${gitServer.url}/team`, username: GIT_USER, password: GIT_PASSWORD },
      { url: `${gitServer.url}/wrong`, username: GIT_USER, password: WRONG_PASSWORD },
    ],
  }),
);

const stack = useStack({
  env: { WORKER_ACK_WAIT_MS: '4000', BUILD_LOCK_TTL_MS: '3000', GIT_CREDENTIALS_FILE: credentialsFile },
});

afterAll(async () => {
  await gitServer.close();
  rmSync(scratch, { recursive: true, force: true });
});

// --- helpers -----------------------------------------------------------------------------------

interface AppSpec {
  name: string;
  url: string;
  env?: Record<string, string>;
  secrets?: Record<string, string>;
  memoryMib?: number;
  publicPort?: boolean;
}

function appDefinition(spec: AppSpec, stageId: string): Partial<control.Service> {
  return {
    name: spec.name,
    kind: ServiceKind.SERVICE_KIND_APPLICATION,
    stageId,
    source: {
      $case: 'application',
      value: control.ApplicationSource.fromPartial({
        gitUrl: spec.url,
        branch: 'main',
        ports: [{ port: 8080, public: spec.publicPort ?? false }],
      }),
    },
    buildResources: { cpuMillis: 1000, memoryMib: spec.memoryMib ?? 512 },
    envVars: [
      ...Object.entries(spec.env ?? {}).map(([key, value]) => ({ key, value, secret: false })),
      ...Object.entries(spec.secrets ?? {}).map(([key, value]) => ({ key, value, secret: true })),
    ],
    healthCheck: control.HealthCheck.fromPartial({
      probe: { $case: 'http', value: { path: '/', port: 8080 } },
      periodSeconds: 1,
    }),
    readinessTimeoutSeconds: 60,
  };
}

async function environmentWith(name: string, specs: AppSpec[]) {
  const created = await createEnvironment(stack, name);
  const environmentId = created.environment!.id;
  const stageId = created.pipeline!.stages[3]!.id;
  const services: control.Service[] = [];
  for (const spec of specs) {
    const { service } = await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({ environmentId, service: appDefinition(spec, stageId) }),
    );
    services.push(service!);
  }
  return { environmentId, stageId, services };
}

async function deployEnv(
  environmentId: string,
  action: 'deployEnvironment' | 'redeployEnvironment' = 'deployEnvironment',
) {
  const { deployment } = await callUnary(stack.deployments, action, {
    environmentId,
    versions: {},
    requester: 'e2e',
    forceBuild: false,
  });
  return (await watchToEnd(stack, deployment!.id, 240_000)).final;
}

const serviceRun = (d: control.Deployment, name: string) => d.services.find((s) => s.name === name)!;
const lastStep = (s: control.ServiceRun, kind: control.StepKind) => s.steps.findLast((st) => st.kind === kind);

/** PlanDeployment of a DEPLOY: the dry run, with the build service's cache predictions. */
async function plan(environmentId: string): Promise<control.Deployment> {
  const { deployment } = await callUnary(
    stack.deployments,
    'planDeployment',
    control.PlanDeploymentRequest.fromPartial({ environmentId, action: control.Action.ACTION_DEPLOY }),
  );
  expect(runStatusName(deployment!.status)).toBe('PLANNED');
  return deployment!;
}
const plannedStep = (d: control.Deployment, kind: control.StepKind) => lastStep(serviceRun(d, 'api'), kind)!;

async function logsOf(deploymentId: string, serviceId: string): Promise<control.LogLine[]> {
  const lines: control.LogLine[] = [];
  await new Promise<void>((resolve, reject) => {
    const call = stack.deployments.streamLogs({ deploymentId, serviceId, follow: false });
    call.on('data', (m: control.StreamLogsResponse) => {
      if (m.line) lines.push(m.line);
    });
    call.on('end', resolve);
    call.on('error', reject);
  });
  return lines;
}

/** A client of the build service process that is alive. */
function buildClient(s: Stack): build.BuildServiceClient {
  const proc = s.procs.findLast((p) => p.name === 'build' && p.child.exitCode === null && p.child.signalCode === null)!;
  // BuildService is internal: the planner and control call it (mutual TLS, here as control).
  return connect(build.BuildServiceClient, proc.address, s.security.service('control'));
}

async function explain(serviceId: string, deploymentId?: string): Promise<build.ExplainBuildResponse> {
  const client = buildClient(stack);
  try {
    return await callUnary(client, 'explainBuild', build.ExplainBuildRequest.fromPartial({ serviceId, deploymentId }));
  } finally {
    client.close();
  }
}

async function bodyOf(run: control.Deployment, name: string): Promise<string> {
  const url = serviceRun(run, name).endpoints.find((e) => e.url.startsWith('http'))?.url;
  if (!url) throw new Error(`${name} has no public endpoint`);
  return (await (await fetch(url)).text()).trim();
}

const APP = `FROM ${EXAMPLE_IMAGE}
${RUN_LABEL}
ARG API_URL=unset
RUN mkdir -p /www && printf 'built for %s\\n' "$API_URL" > /www/index.html && echo "image says: built for $API_URL"
`;

describe('git applications', () => {
  it('build on first deploy, hit the cache when nothing that matters changed, and explain every rebuild', async () => {
    const repo = repository(join(scratch, 'repos/api.git'));
    const first = repo.commit({ Dockerfile: APP });
    const { environmentId, services } = await environmentWith('apps', [
      { name: 'api', url: repo.url, env: { API_URL: 'https://one.example' }, publicPort: true },
    ]);
    const api = services[0]!;

    // First deploy: cloned, built, pushed, deployed; the branch is recorded as the commit it was at.
    const run1 = await deployEnv(environmentId);
    expect(runStatusName(run1.status), run1.message).toBe('SUCCEEDED');
    const s1 = serviceRun(run1, 'api');
    expect(stateName(s1.status)).toBe('DEPLOYED');
    expect(s1.version).toBe(`commit:${first}`);
    expect(s1.steps.map((st) => control.stepKindToJSON(st.kind).replace('STEP_KIND_', ''))).toEqual([
      'BUILD_QUEUEING',
      'GIT_CLONE',
      'BUILD',
      'DEPLOYMENT_QUEUEING',
      'DEPLOYMENT',
    ]);
    expect(lastStep(s1, StepKind.STEP_KIND_BUILD)!.outcome).toBe(StepOutcome.STEP_OUTCOME_SUCCESS);
    expect(await bodyOf(run1, 'api')).toBe('built for https://one.example');
    const key1 = (await explain(api.id)).cacheKey;
    const log1 = (await logsOf(run1.id, api.id)).map((l) => l.message);
    // Build output streamed line by line, under the BUILD step.
    expect(log1).toContain('image says: built for https://one.example');
    expect(log1.some((l) => l.startsWith(`cache key ${key1}`))).toBe(true);

    // Unchanged: nothing is built; the step says cache hit, with the key.
    const run2 = await deployEnv(environmentId);
    const build2 = lastStep(serviceRun(run2, 'api'), StepKind.STEP_KIND_BUILD)!;
    expect(build2.outcome).toBe(StepOutcome.STEP_OUTCOME_CACHE_HIT);
    expect(build2.message).toContain(`cache hit: key ${key1}`);
    expect((await logsOf(run2.id, api.id)).map((l) => l.message)).not.toContain(
      'image says: built for https://one.example',
    );

    // The dry run predicts it: a cache hit with the same key, at the commit the branch is at.
    const p2 = await plan(environmentId);
    expect(plannedStep(p2, StepKind.STEP_KIND_BUILD).outcome).toBe(StepOutcome.STEP_OUTCOME_CACHE_HIT);
    expect(plannedStep(p2, StepKind.STEP_KIND_BUILD).message).toContain(`predicted cache hit: key ${key1}`);
    expect(plannedStep(p2, StepKind.STEP_KIND_GIT_CLONE).message).toBe(`would clone commit ${first}`);

    // A variable the Dockerfile does not declare as ARG: still a cache hit.
    const update = async (env: Record<string, string>) => {
      await callUnary(
        stack.environments,
        'updateService',
        control.UpdateServiceRequest.fromPartial({
          environmentId,
          service: { ...appDefinition({ name: 'api', url: repo.url, env, publicPort: true }, ''), id: api.id },
        }),
      );
    };
    await update({ API_URL: 'https://one.example', LOG_LEVEL: 'debug' });
    const run3 = await deployEnv(environmentId);
    expect(lastStep(serviceRun(run3, 'api'), StepKind.STEP_KIND_BUILD)!.outcome).toBe(
      StepOutcome.STEP_OUTCOME_CACHE_HIT,
    );
    expect((await explain(api.id, run3.id)).cacheKey).toBe(key1);

    // An ARG's value: rebuilt, and the explanation names it — in ExplainBuild and in the run log.
    await update({ API_URL: 'https://two.example', LOG_LEVEL: 'debug' });
    const p4 = await plan(environmentId);
    const predicted4 = plannedStep(p4, StepKind.STEP_KIND_BUILD);
    expect(predicted4.outcome).toBe(StepOutcome.STEP_OUTCOME_UNSPECIFIED);
    expect(predicted4.message).toContain(
      'would build: ARG `API_URL` differs: `https://one.example` → `https://two.example`',
    );
    const run4 = await deployEnv(environmentId);
    expect(lastStep(serviceRun(run4, 'api'), StepKind.STEP_KIND_BUILD)!.outcome).toBe(StepOutcome.STEP_OUTCOME_SUCCESS);
    expect(await bodyOf(run4, 'api')).toBe('built for https://two.example');
    const why = await explain(api.id, run4.id);
    expect(why.previousCacheKey).toBe(key1);
    expect(why.cacheKey).not.toBe(key1);
    expect(predicted4.message).toContain(`key ${why.cacheKey}: would build`);
    const changed = why.inputs.filter((i) => i.changed);
    expect(changed.map((i) => i.name)).toEqual(['arg:API_URL']);
    expect(changed[0]!.detail).toContain('ARG `API_URL` differs: `https://one.example` → `https://two.example`');
    expect((await logsOf(run4.id, api.id)).map((l) => l.message).join('\n')).toContain('ARG `API_URL` differs');

    // A new commit: rebuilt, explained as such, and recorded.
    const second = repo.commit({ Dockerfile: APP, 'NOTES.md': 'second commit\n' });
    const p5 = await plan(environmentId);
    expect(plannedStep(p5, StepKind.STEP_KIND_GIT_CLONE).message).toBe(`would clone commit ${second}`);
    expect(plannedStep(p5, StepKind.STEP_KIND_BUILD).message).toContain(
      `would build: new commit: \`${first.slice(0, 12)}\` → \`${second.slice(0, 12)}\``,
    );
    expect(plannedStep(p5, StepKind.STEP_KIND_BUILD).outcome).toBe(StepOutcome.STEP_OUTCOME_UNSPECIFIED);
    const run5 = await deployEnv(environmentId);
    expect(serviceRun(run5, 'api').version).toBe(`commit:${second}`);
    expect(lastStep(serviceRun(run5, 'api'), StepKind.STEP_KIND_BUILD)!.outcome).toBe(StepOutcome.STEP_OUTCOME_SUCCESS);
    expect((await explain(api.id, run5.id)).inputs.filter((i) => i.changed).map((i) => i.name)).toEqual(['commit']);

    // REDEPLOY is reproducible: the recorded commit, not the branch's newer head, and no rebuild.
    repo.commit({ Dockerfile: APP, 'NOTES.md': 'third commit\n' });
    const run6 = await deployEnv(environmentId, 'redeployEnvironment');
    expect(serviceRun(run6, 'api').version).toBe(`commit:${second}`);
    expect(lastStep(serviceRun(run6, 'api'), StepKind.STEP_KIND_BUILD)!.outcome).toBe(
      StepOutcome.STEP_OUTCOME_CACHE_HIT,
    );
  }, 240_000);

  it('two services with the same repository, commit and Dockerfile in one run: one build, one digest', async () => {
    const repo = repository(join(scratch, 'repos/twins.git'));
    repo.commit({ Dockerfile: `${APP}RUN sleep 1\n` });
    const env = { API_URL: 'https://same.example' };
    const { environmentId, services } = await environmentWith('twins', [
      { name: 'left', url: repo.url, env },
      { name: 'right', url: repo.url, env },
    ]);
    const run = await deployEnv(environmentId);
    expect(runStatusName(run.status), run.message).toBe('SUCCEEDED');
    const outcomes = ['left', 'right'].map((n) => lastStep(serviceRun(run, n), StepKind.STEP_KIND_BUILD)!.outcome);
    expect(outcomes.sort()).toEqual([StepOutcome.STEP_OUTCOME_SUCCESS, StepOutcome.STEP_OUTCOME_CACHE_HIT].sort());
    const deployProc = stack.procs.find((p) => p.name === 'deploy')!;
    const releases = connect(deploy.ReleaseServiceClient, deployProc.address, stack.security.service('control'));
    try {
      const digests = await Promise.all(
        services.map(async (s) => (await callUnary(releases, 'listReleases', { serviceId: s.id })).releases[0]?.digest),
      );
      expect(digests[0]).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(digests[1]).toBe(digests[0]);
    } finally {
      releases.close();
    }
  }, 120_000);

  it('a failing Dockerfile: BUILD_ERROR, the run fails, the log holds the failing line', async () => {
    const repo = repository(join(scratch, 'repos/broken.git'));
    repo.commit({ Dockerfile: `FROM ${EXAMPLE_IMAGE}\n${RUN_LABEL}\nRUN echo about-to-fail && exit 7\n` });
    const { environmentId, services } = await environmentWith('broken', [{ name: 'broken', url: repo.url }]);
    const run = await deployEnv(environmentId);
    expect(runStatusName(run.status)).toBe('FAILED');
    const s = serviceRun(run, 'broken');
    expect(stateName(s.status)).toBe('BUILD_ERROR');
    expect(s.message).toContain('exit status 7');
    expect(lastStep(s, StepKind.STEP_KIND_BUILD)!.outcome).toBe(StepOutcome.STEP_OUTCOME_ERROR);
    const log = (await logsOf(run.id, services[0]!.id))
      .filter((l) => l.step === StepKind.STEP_KIND_BUILD)
      .map((l) => l.message);
    expect(log).toContain('about-to-fail');
    expect(log.some((l) => l.includes('RUN echo about-to-fail && exit 7'))).toBe(true);
  }, 120_000);

  it('a build over its memory limit fails with BUILD_ERROR naming the limit', async () => {
    const repo = repository(join(scratch, 'repos/hungry.git'));
    repo.commit({
      Dockerfile: `FROM ${EXAMPLE_IMAGE}\n${RUN_LABEL}\nRUN dd if=/dev/zero of=/dev/null bs=300M count=1 && echo fits\n`,
    });
    const { environmentId } = await environmentWith('hungry', [{ name: 'hungry', url: repo.url, memoryMib: 128 }]);
    const run = await deployEnv(environmentId);
    const s = serviceRun(run, 'hungry');
    expect(stateName(s.status)).toBe('BUILD_ERROR');
    expect(s.message).toMatch(/exceeded its memory limit of 128 MiB/);
  }, 120_000);

  it('secrets — a git credential and a secret variable — appear in no log, event, error or command line', async () => {
    const secretValue = 'sv-4c2b9e1f7a3d8e6b';
    const repo = repository(join(gitRoot, 'team/private.git'));
    repo.commit({
      Dockerfile: `FROM ${EXAMPLE_IMAGE}\n${RUN_LABEL}\nARG SECRET_TOKEN\nRUN echo "token is $SECRET_TOKEN" && sleep 1\n`,
    });
    git(['clone', '--quiet', '--bare', join(gitRoot, 'team/private.git'), join(gitRoot, 'wrong/private.git')]);
    const { environmentId, services } = await environmentWith('secrets', [
      { name: 'private', url: `${gitServer.url}/team/private.git`, secrets: { SECRET_TOKEN: secretValue } },
    ]);
    const secrets = [secretValue, GIT_PASSWORD, WRONG_PASSWORD];

    const seen = new Set<string>();
    const sampler = setInterval(() => {
      for (const pid of readdirSync('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        try {
          seen.add(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' '));
        } catch {
          // exited
        }
      }
    }, 5);
    let run: control.Deployment;
    let failedRun: control.Deployment;
    try {
      run = await deployEnv(environmentId);
      // Wrong credentials next: the error must not carry them either.
      await callUnary(
        stack.environments,
        'updateService',
        control.UpdateServiceRequest.fromPartial({
          environmentId,
          service: {
            ...appDefinition(
              { name: 'private', url: `${gitServer.url}/wrong/private.git`, secrets: { SECRET_TOKEN: secretValue } },
              '',
            ),
            id: services[0]!.id,
          },
        }),
      );
      failedRun = await deployEnv(environmentId);
    } finally {
      clearInterval(sampler);
    }
    expect(runStatusName(run.status), run.message).toBe('SUCCEEDED');
    expect(runStatusName(failedRun.status)).toBe('FAILED');
    const failure = serviceRun(failedRun, 'private').message;
    expect(failure).toMatch(/Authentication failed/);

    const log = (await logsOf(run.id, services[0]!.id)).map((l) => l.message);
    expect(log).toContain('token is ***');
    const failedLog = (await logsOf(failedRun.id, services[0]!.id)).map((l) => l.message);

    // Every message of this stack's results, events, logs and dead letters, as raw bytes.
    const prefix = stack.isolated.busPrefix.toUpperCase();
    let scanned = 0;
    const raw: string[] = [];
    for (const stream of ['RESULTS', 'EVENTS', 'LOGS', 'DLQ']) {
      const info = await stack.bus.jsm.streams.info(`${prefix}_${stream}`);
      for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
        const m = await stack.bus.jsm.streams.getMessage(`${prefix}_${stream}`, { seq }).catch(() => null);
        if (m) {
          raw.push(Buffer.from(m.data).toString('latin1'));
          scanned++;
        }
      }
    }
    expect(scanned).toBeGreaterThan(10);
    const commandLines = [...seen];
    expect(commandLines.some((c) => c.includes('fetch') && c.includes('origin'))).toBe(true);
    expect(commandLines.some((c) => c.includes('buildah') && c.includes('bud'))).toBe(true);
    const processLogs = (['control', 'planner', 'build', 'deploy'] as ServiceName[]).map((n) => stack.logs(n));
    for (const secret of secrets) {
      for (const [where, texts] of Object.entries({
        log: log,
        failedLog,
        error: [failure, failedRun.message],
        bus: raw,
        ps: commandLines,
        processLogs,
      })) {
        expect(
          texts.filter((t) => t.includes(secret)),
          `${where} holds a secret`,
        ).toEqual([]);
      }
    }
  }, 180_000);

  it('kill -9 of a build worker mid-build: another worker rebuilds it and the run completes', async () => {
    const repo = repository(join(scratch, 'repos/slow.git'));
    repo.commit({
      Dockerfile: `FROM ${EXAMPLE_IMAGE}\n${RUN_LABEL}\nRUN echo slow-build-started && sleep 6 && echo slow-build-done\n`,
    });
    const { environmentId, services } = await environmentWith('crash', [{ name: 'slow', url: repo.url }]);
    const first = stack.procs.find((p) => p.name === 'build')!;
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      versions: {},
      environmentId,
      requester: 'e2e',
      forceBuild: false,
    });
    // Until its RUN step is running on the only build worker.
    for (let i = 0; i < 600; i++) {
      const lines = await logsOf(deployment!.id, services[0]!.id);
      if (lines.some((l) => l.message === 'slow-build-started')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const second = await stack.spawnWorker('build');
    first.child.kill('SIGKILL');
    await first.exited;

    const { final } = await watchToEnd(stack, deployment!.id, 240_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    const s = serviceRun(final, 'slow');
    expect(stateName(s.status)).toBe('DEPLOYED');
    // Built again from scratch by the second worker: whatever the first left behind was no cache hit.
    const builds = s.steps.filter((st) => st.kind === StepKind.STEP_KIND_BUILD);
    expect(builds.length).toBe(2);
    expect(builds.at(-1)!.outcome).toBe(StepOutcome.STEP_OUTCOME_SUCCESS);
    const log = (await logsOf(final.id, services[0]!.id)).map((l) => l.message);
    expect(log).toContain('slow-build-done');
    expect(log).toContain('no complete image for this key in the mirror: building');
    expect(second.output()).toContain('"msg":"worker consuming"');
  }, 240_000);
});
