// GIT build jobs with real git, buildah, the mirror registry, PostgreSQL and a NATS KV lock: what is
// built when, what the cache hits, how a rebuild is explained, how builds fail, stop and share.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bus, WorkerStopping } from '@stageline/bus';
import { type Database, openDatabase } from '@stageline/db';
import { bus, control } from '@stageline/proto';
import { memorySecrets } from '@stageline/secrets';
import { resolveRegistry, testSecurity, useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildahBuilder } from '../src/adapters/builder/buildah.ts';
import { BuildStore } from '../src/adapters/db/build-store.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { GitClient } from '../src/adapters/git/git.ts';
import { BuildLocks } from '../src/adapters/nats/build-lock.ts';
import { RegistryClient } from '../src/adapters/registry/client.ts';
import { explainBuild } from '../src/app/explain.ts';
import { type GitBuildDeps, gitBuildJob } from '../src/app/git-build.ts';
import { createRepo, EXAMPLE_IMAGE, type TestRepo } from './git-support.ts';
import { type RecordingContext, recordingContext, silentLog, uniqueName } from './support.ts';

const { StepKind, StepOutcome, ServiceState, ServiceKind } = control;
const isolated = useIsolatedEnvironment();
let db: Database;
let busConn: Bus;
let deps: GitBuildDeps;
let store: BuildStore;
let scratch: string;
let repo: TestRepo;
let mirrorHost: string;
const registry = new RegistryClient();
const project = uniqueName('p');
// buildah's layer cache outlives a test run: a label unique to this run makes every RUN step run again.
const FROM = `FROM ${EXAMPLE_IMAGE}\nLABEL stageline.test.run=${project}`;

const APP_DOCKERFILE = `${FROM}
ARG API_URL=unset
COPY www/ /www/
RUN echo "built for $API_URL" > /www/built.txt && echo "step output: api url is $API_URL"
`;

beforeAll(async () => {
  db = await openDatabase({ url: isolated.databaseUrl, schema: 'build', entities: [], migrations, log: silentLog });
  store = new BuildStore(db);
  busConn = await Bus.connect({
    url: isolated.natsUrl,
    prefix: isolated.busPrefix,
    name: 'git-build-test',
    log: silentLog,
  });
  mirrorHost = new URL((await resolveRegistry()).url).host;
  scratch = await mkdtemp(join(tmpdir(), 'stageline-git-build-'));
  repo = createRepo(scratch, 'api');
  deps = {
    git: new GitClient({ workDir: join(scratch, 'work') }),
    builder: new BuildahBuilder(),
    registry,
    mirrorRegistry: mirrorHost,
    builds: store,
    locks: await BuildLocks.open(busConn, { ttlMs: 3000, pollMs: 100, log: silentLog }),
    workDir: join(scratch, 'work'),
    fingerprint: memorySecrets([{ id: 'k-git-build', bytes: randomBytes(32) }]).fingerprint,
  };
}, 60_000);

afterAll(async () => {
  await busConn?.close();
  await db?.close();
  rmSync(scratch, { recursive: true, force: true });
});

interface AppSpec {
  env?: Record<string, string>;
  secrets?: Record<string, string>;
  branch?: string;
  commit?: string;
  target?: string;
  memoryMib?: number;
  timeoutSeconds?: number;
  url?: string;
}

function appService(id: string, spec: AppSpec = {}): control.Service {
  return control.Service.fromPartial({
    id,
    name: 'api',
    kind: ServiceKind.SERVICE_KIND_APPLICATION,
    source: {
      $case: 'application',
      value: {
        gitUrl: spec.url ?? repo.url,
        branch: spec.branch ?? 'main',
        commit: spec.commit ?? '',
        rootPath: '',
        dockerfilePath: 'Dockerfile',
        buildTarget: spec.target ?? '',
        buildTimeoutSeconds: spec.timeoutSeconds ?? 600,
        ports: [{ port: 8080, public: false }],
      },
    },
    buildResources: { cpuMillis: 1000, memoryMib: spec.memoryMib ?? 512 },
    envVars: [
      ...Object.entries(spec.env ?? {}).map(([key, value]) => ({ key, value, secret: false })),
      ...Object.entries(spec.secrets ?? {}).map(([key, value]) => ({ key, value, secret: true })),
    ],
  });
}

function gitJob(service: control.Service, overrides: Partial<bus.BuildJob> = {}): bus.BuildJob {
  return bus.BuildJob.fromPartial({
    jobId: uniqueName('job-'),
    deploymentId: uniqueName('dep-'),
    environmentId: uniqueName('env-'),
    project,
    environmentName: 'staging',
    kind: bus.BuildKind.BUILD_KIND_GIT,
    service,
    version: '',
    attempt: 1,
    ...overrides,
  });
}

async function run(job: bus.BuildJob, ctx: RecordingContext = recordingContext()) {
  const result = await gitBuildJob(deps, job, ctx);
  const build = ctx.finished.find((s) => s.kind === StepKind.STEP_KIND_BUILD);
  return { result, ctx, build, log: ctx.lines.join('\n') };
}

describe('git builds', () => {
  const serviceId = uniqueName('svc-');
  let head = '';
  let firstKey = '';
  let firstImage = '';

  it('first deploy builds: clone, key, buildah, push; the branch is resolved to its commit', async () => {
    head = repo.commit({ Dockerfile: APP_DOCKERFILE, 'www/index.html': 'hello\n' });
    const { result, ctx, build, log } = await run(
      gitJob(appService(serviceId, { env: { API_URL: 'https://staging' } })),
    );
    expect(result.succeeded, result.message).toBe(true);
    expect(result.resolvedVersion).toBe(`commit:${head}`);
    expect(result.cacheKey).toMatch(/^[0-9a-f]{64}$/);
    expect(result.image).toMatch(
      new RegExp(`^${mirrorHost}/${project}/api-[0-9a-f]{8}:build-${result.cacheKey}@sha256:[0-9a-f]{64}$`),
    );
    expect(ctx.started.map((s) => s.kind)).toEqual([StepKind.STEP_KIND_GIT_CLONE, StepKind.STEP_KIND_BUILD]);
    expect(ctx.finished.map((s) => s.outcome)).toEqual([
      StepOutcome.STEP_OUTCOME_SUCCESS,
      StepOutcome.STEP_OUTCOME_SUCCESS,
    ]);
    expect(ctx.finished[0]!.message).toBe(`branch main is at commit ${head}`);
    expect(build!.message).toContain(`key ${result.cacheKey}`);
    // The builder's own output, line by line, and the RUN step's.
    expect(log).toContain('step output: api url is https://staging');
    expect(log).toMatch(/STEP 1\/5: FROM/);
    expect(log).toContain('first build of this service');
    // The image really is in the mirror under that digest.
    const [ref, digest] = result.image.split('@') as [string, string];
    const head2 = await registry.headManifest({
      registry: mirrorHost,
      repository: ref.slice(mirrorHost.length + 1).split(':')[0]!,
      tag: `build-${result.cacheKey}`,
    });
    expect(head2?.digest).toBe(digest);
    firstKey = result.cacheKey;
    firstImage = result.image;
  });

  it('an unchanged redeploy builds nothing: cache hit, with the key', async () => {
    const { result, build, log } = await run(gitJob(appService(serviceId, { env: { API_URL: 'https://staging' } })));
    expect(result.succeeded).toBe(true);
    expect(build!.outcome).toBe(StepOutcome.STEP_OUTCOME_CACHE_HIT);
    expect(build!.message).toContain(`cache hit: key ${firstKey}`);
    expect(result.image).toBe(firstImage);
    expect(log).not.toContain('step output');
    expect(log).toContain("same inputs as the service's previous build");
  });

  it('a changed environment variable that is not an ARG builds nothing', async () => {
    const { result, build } = await run(
      gitJob(
        appService(serviceId, {
          env: { API_URL: 'https://staging', LOG_LEVEL: 'debug' },
          secrets: { TOKEN: 'x1y2z3' },
        }),
      ),
    );
    expect(build!.outcome).toBe(StepOutcome.STEP_OUTCOME_CACHE_HIT);
    expect(result.cacheKey).toBe(firstKey);
  });

  it('a changed ARG rebuilds, and the explanation names it', async () => {
    const { result, build, log } = await run(gitJob(appService(serviceId, { env: { API_URL: 'https://prod' } })));
    expect(result.succeeded, result.message).toBe(true);
    expect(build!.outcome).toBe(StepOutcome.STEP_OUTCOME_SUCCESS);
    expect(result.cacheKey).not.toBe(firstKey);
    const detail =
      'ARG `API_URL` differs: `https://staging` → `https://prod`: environment-specific ARG values rebuild per environment';
    expect(log).toContain(detail);
    const explained = await explainBuild(store, serviceId);
    expect(explained.cacheKey).toBe(result.cacheKey);
    expect(explained.previousCacheKey).toBe(firstKey);
    expect(explained.inputs.filter((i) => i.changed)).toEqual([
      { name: 'arg:API_URL', digest: expect.stringMatching(/^sha256:/), changed: true, detail },
    ]);
    expect(explained.inputs.map((i) => i.name)).toEqual([
      'root_path',
      'dockerfile_path',
      'dockerfile',
      'target',
      'arg:API_URL',
      'commit',
    ]);
  });

  it('a new commit rebuilds, and the explanation says so', async () => {
    const next = repo.commit({ Dockerfile: APP_DOCKERFILE, 'www/index.html': 'hello again\n' });
    const { result, build } = await run(gitJob(appService(serviceId, { env: { API_URL: 'https://prod' } })));
    expect(build!.outcome).toBe(StepOutcome.STEP_OUTCOME_SUCCESS);
    expect(result.resolvedVersion).toBe(`commit:${next}`);
    const explained = await explainBuild(store, serviceId);
    expect(explained.inputs.filter((i) => i.changed).map((i) => i.detail)).toEqual([
      `new commit: \`${head.slice(0, 12)}\` → \`${next.slice(0, 12)}\``,
    ]);
  });

  it('the recorded commit builds the same image again (a redeploy is reproducible)', async () => {
    const { result, build } = await run(
      gitJob(appService(serviceId, { env: { API_URL: 'https://staging' } }), { version: `commit:${head}` }),
    );
    expect(build!.outcome).toBe(StepOutcome.STEP_OUTCOME_CACHE_HIT);
    expect(result.image).toBe(firstImage);
  });

  it('forceBuild bypasses the cache', async () => {
    const { result, build } = await run(
      gitJob(appService(serviceId, { env: { API_URL: 'https://staging' } }), {
        version: `commit:${head}`,
        forceBuild: true,
      }),
    );
    expect(build!.outcome).toBe(StepOutcome.STEP_OUTCOME_SUCCESS);
    expect(result.cacheKey).toBe(firstKey);
  });
});

describe('identical builds in flight', () => {
  it('are built once and shared: the second waits for the first and takes its image', async () => {
    const shared = createRepo(scratch, 'shared');
    shared.commit({ Dockerfile: `${FROM}\nRUN sleep 2 && echo slow-step-done\n` });
    const a = appService(uniqueName('svc-'), { url: shared.url });
    const b = appService(uniqueName('svc-'), { url: shared.url });
    const deploymentId = uniqueName('dep-');
    const [first, second] = await Promise.all([
      run(gitJob(a, { deploymentId })),
      // Starts a moment later, so the first holds the lock.
      new Promise((r) => setTimeout(r, 300)).then(() => run(gitJob(b, { deploymentId }))),
    ]);
    const outcomes = [first.build!.outcome, second.build!.outcome].sort();
    expect(outcomes).toEqual([StepOutcome.STEP_OUTCOME_SUCCESS, StepOutcome.STEP_OUTCOME_CACHE_HIT].sort());
    expect(first.result.image).toBe(second.result.image);
    const waiter = first.build!.outcome === StepOutcome.STEP_OUTCOME_CACHE_HIT ? first : second;
    expect(waiter.log).toContain('an identical build (same key) is in flight');
    expect(waiter.log).not.toContain('slow-step-done');
    // The RUN step's own output line, once: one build ran.
    expect([...first.ctx.lines, ...second.ctx.lines].filter((l) => l === 'slow-step-done')).toHaveLength(1);
  });
});

describe('failures', () => {
  it("a RUN step reads none of Stageline's state: no token, no key, no worker variable", async () => {
    const security = testSecurity();
    const key = security.files('build').key;
    const before = process.env.DATABASE_URL;
    process.env.DATABASE_URL = 'postgres://worker:worker-only-password@db/stageline';
    try {
      const nosy = createRepo(scratch, 'nosy');
      nosy.commit({
        Dockerfile:
          `${FROM}\nRUN echo "probe token=$(cat ${security.adminTokenFile} 2>/dev/null || echo unreadable)` +
          ` key=$(cat ${key} 2>/dev/null || echo unreadable) db=[\${DATABASE_URL:-unset}]"\n`,
      });
      const { result, log } = await run(gitJob(appService(uniqueName('svc-'), { url: nosy.url })));
      expect(result.succeeded).toBe(true);
      expect(log).toContain('probe token=unreadable key=unreadable db=[unset]');
      expect(log).not.toContain(security.adminToken);
      expect(log).not.toContain('worker-only-password');
    } finally {
      if (before === undefined) delete process.env.DATABASE_URL;
      else process.env.DATABASE_URL = before;
    }
  });

  it('a failing Dockerfile: BUILD_ERROR, and the log holds the failing line', async () => {
    const broken = createRepo(scratch, 'broken');
    broken.commit({ Dockerfile: `${FROM}\nRUN echo before-the-failure && exit 3\n` });
    const { result, build, log } = await run(gitJob(appService(uniqueName('svc-'), { url: broken.url })));
    expect(result.succeeded).toBe(false);
    expect(result.state).toBe(ServiceState.SERVICE_STATE_BUILD_ERROR);
    expect(build!.outcome).toBe(StepOutcome.STEP_OUTCOME_ERROR);
    expect(result.message).toContain('RUN echo before-the-failure && exit 3');
    expect(result.message).toContain('exit status 3');
    expect(log).toContain('before-the-failure');
    expect(log).toMatch(/STEP 3\/3: RUN echo before-the-failure && exit 3/);
  });

  it('a build past its memory limit: BUILD_ERROR naming the limit (the cgroup limit is enforced)', async () => {
    const hungry = createRepo(scratch, 'hungry');
    // dd holds a 300 MiB buffer: far over 128 MiB, far under the default 4 GiB.
    hungry.commit({ Dockerfile: `${FROM}\nRUN dd if=/dev/zero of=/dev/null bs=300M count=1 && echo fits\n` });
    const { result, build } = await run(gitJob(appService(uniqueName('svc-'), { url: hungry.url, memoryMib: 128 })));
    expect(result.state).toBe(ServiceState.SERVICE_STATE_BUILD_ERROR);
    expect(build!.outcome).toBe(StepOutcome.STEP_OUTCOME_ERROR);
    expect(result.message).toMatch(/exceeded its memory limit of 128 MiB/);
    // With room enough, the same build passes: the limit, not the step, made it fail.
    const roomy = await run(gitJob(appService(uniqueName('svc-'), { url: hungry.url, memoryMib: 1024 })));
    expect(roomy.result.succeeded, roomy.result.message).toBe(true);
    expect(roomy.log).toContain('fits');
  });

  it('a build past build_timeout_seconds: stopped, BUILD_ERROR saying so', async () => {
    const slow = createRepo(scratch, 'slow');
    slow.commit({ Dockerfile: `${FROM}\nRUN echo sleeping && sleep 60\n` });
    const started = Date.now();
    const { result, build } = await run(gitJob(appService(uniqueName('svc-'), { url: slow.url, timeoutSeconds: 3 })));
    expect(result.state).toBe(ServiceState.SERVICE_STATE_BUILD_ERROR);
    expect(build!.outcome).toBe(StepOutcome.STEP_OUTCOME_ERROR);
    expect(result.message).toBe('the build exceeded its time limit of 3 s (build_timeout_seconds) while building');
    expect(Date.now() - started).toBeLessThan(40_000);
  });

  it('a canceled run stops the build: CANCELED', async () => {
    const slow = createRepo(scratch, 'slow2');
    slow.commit({ Dockerfile: `${FROM}\nRUN echo sleeping && sleep 60\n` });
    const controller = new AbortController();
    const ctx = recordingContext(controller.signal);
    const running = run(gitJob(appService(uniqueName('svc-'), { url: slow.url })), ctx);
    while (!ctx.lines.some((l) => l === 'sleeping')) await new Promise((r) => setTimeout(r, 50));
    controller.abort(new Error('run canceled'));
    const { result, build } = await running;
    expect(result.state).toBe(ServiceState.SERVICE_STATE_CANCELED);
    expect(build!.outcome).toBe(StepOutcome.STEP_OUTCOME_CANCELED);
  });

  it("this worker's own shutdown hands the job back instead of reporting the run canceled", async () => {
    const slow = createRepo(scratch, 'slow3');
    slow.commit({ Dockerfile: `${FROM}\nRUN echo sleeping && sleep 60\n` });
    const controller = new AbortController();
    const ctx = recordingContext(controller.signal);
    const running = gitBuildJob(deps, gitJob(appService(uniqueName('svc-'), { url: slow.url })), ctx);
    while (!ctx.lines.some((l) => l === 'sleeping')) await new Promise((r) => setTimeout(r, 50));
    controller.abort(new WorkerStopping());
    await expect(running).rejects.toBeInstanceOf(WorkerStopping);
    expect(ctx.finished.map((s) => s.outcome)).toEqual([StepOutcome.STEP_OUTCOME_SUCCESS]);
  });

  it('a missing Dockerfile or branch: BUILD_ERROR with the reason', async () => {
    const empty = createRepo(scratch, 'empty');
    empty.commit({ 'README.md': 'no Dockerfile here\n' });
    const missing = await run(gitJob(appService(uniqueName('svc-'), { url: empty.url })));
    expect(missing.result.message).toMatch(/^Dockerfile: Dockerfile does not exist at commit [0-9a-f]{12}$/);
    const noBranch = await run(gitJob(appService(uniqueName('svc-'), { url: empty.url, branch: 'nope' })));
    expect(noBranch.result.state).toBe(ServiceState.SERVICE_STATE_BUILD_ERROR);
    expect(noBranch.result.message).toMatch(/cannot fetch branch nope/);
    expect(noBranch.ctx.finished[0]!.kind).toBe(StepKind.STEP_KIND_GIT_CLONE);
  });
});

describe('targets and secrets', () => {
  it('builds the target stage only', async () => {
    const staged = createRepo(scratch, 'staged');
    staged.commit({
      Dockerfile: `FROM ${EXAMPLE_IMAGE} AS base\nLABEL stageline.test.run=${project}\nRUN echo in-base\nFROM base AS final\nRUN echo in-final\n`,
    });
    const { result, log } = await run(gitJob(appService(uniqueName('svc-'), { url: staged.url, target: 'base' })));
    expect(result.succeeded, result.message).toBe(true);
    expect(log).toContain('in-base');
    expect(log).not.toContain('in-final');
  });

  it('a secret ARG reaches the build but never the log, the result or a command line', async () => {
    const secretValue = 'sk-live-4f1d9a7c3e';
    const leaky = createRepo(scratch, 'leaky');
    leaky.commit({ Dockerfile: `${FROM}\nARG API_KEY\nRUN echo "the key is $API_KEY" && sleep 1\n` });
    const seen = new Set<string>();
    const timer = setInterval(() => {
      for (const pid of readdirSync('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        try {
          seen.add(readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' '));
        } catch {
          // exited
        }
      }
    }, 5);
    const serviceId = uniqueName('svc-');
    const { result, log } = await run(
      gitJob(appService(serviceId, { url: leaky.url, secrets: { API_KEY: secretValue } })),
    ).finally(() => clearInterval(timer));
    expect(result.succeeded, result.message).toBe(true);
    // The RUN step saw the value (its echo was redacted on the way out).
    expect(log).toContain('the key is ***');
    expect(log).not.toContain(secretValue);
    expect(JSON.stringify(result)).not.toContain(secretValue);
    expect([...seen].some((c) => c.includes('buildah') && c.includes('bud'))).toBe(true);
    expect([...seen].filter((c) => c.includes(secretValue))).toEqual([]);
    const explained = await explainBuild(store, serviceId);
    expect(explained.inputs.find((i) => i.name === 'arg:API_KEY')?.detail).toBe('ARG `API_KEY` = (secret)');
    expect(JSON.stringify(explained)).not.toContain(secretValue);
  });
});
