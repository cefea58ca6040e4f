import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { afterAll, describe, expect, it } from 'vitest';
import { EXAMPLE_IMAGE, useStack } from './stack.ts';

// The `stageline` command as a user runs it: a child process talking gRPC to the whole stack
// (control, planner, build, deploy as processes on real NATS, PostgreSQL, registries and podman).

const stack = useStack({ env: { WORKER_ACK_WAIT_MS: '5000' } });
const root = fileURLToPath(new URL('../..', import.meta.url));
const main = join(root, 'packages/cli/src/main.ts');
const dir = mkdtempSync(join(tmpdir(), 'stageline-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The terminal emulator is the CLI package's own dev dependency (its tests render frames too).
const { Terminal } = createRequire(join(root, 'packages/cli/package.json'))('@xterm/headless') as {
  Terminal: new (o: {
    cols: number;
    rows: number;
    allowProposedApi: boolean;
  }) => {
    write(data: string, cb: () => void): void;
    rows: number;
    buffer: {
      active: { viewportY: number; getLine(i: number): { translateToString(trim: boolean): string } | undefined };
    };
  };
};

const address = () => stack.procs.find((p) => p.name === 'control')!.address;

/**
 * The environment the CLI runs in: no user config file, no colour choice from the outside; the test
 * CA and the admin token, as a user of a TLS-only control names them (STAGELINE_CA, STAGELINE_TOKEN_FILE).
 */
function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of [
    'STAGELINE_ADDRESS',
    'STAGELINE_PROJECT',
    'STAGELINE_ENVIRONMENT',
    'STAGELINE_TOKEN',
    'STAGELINE_DEFAULT_CA',
    'STAGELINE_DEFAULT_TOKEN_FILE',
    'NO_COLOR',
  ])
    delete env[k];
  return {
    ...env,
    STAGELINE_CONFIG: join(dir, 'no-config.yaml'),
    STAGELINE_CA: stack.security.ca,
    STAGELINE_TOKEN_FILE: stack.security.adminTokenFile,
    ...extra,
  };
}

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], extraEnv: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [main, '--address', address(), ...args], {
      env: cliEnv(extraEnv),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs the CLI under a pseudo-terminal (util-linux `script`) of a fixed size; every chunk it writes becomes a frame. */
function cliInPty(
  args: string[],
  cols: number,
  rows: number,
): Promise<{ code: number | null; raw: string; frames: string[] }> {
  const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
  const inner = `stty cols ${cols} rows ${rows}; exec ${[process.execPath, main, '--address', address(), ...args].map(quote).join(' ')}`;
  const term = new Terminal({ cols, rows, allowProposedApi: true });
  const screen = () => {
    const b = term.buffer.active;
    return Array.from({ length: term.rows }, (_, i) => b.getLine(b.viewportY + i)?.translateToString(true) ?? '').join(
      '\n',
    );
  };
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qfec', inner, '/dev/null'], {
      env: cliEnv({ TERM: 'xterm-256color' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let raw = '';
    const frames: string[] = [];
    let written = Promise.resolve();
    child.stdout.on('data', (c: Buffer) => {
      raw += c.toString();
      written = written.then(
        () =>
          new Promise<void>((done) =>
            term.write(c.toString(), () => {
              frames.push(screen());
              done();
            }),
          ),
      );
    });
    child.on('error', reject);
    child.on('close', (code) => void written.then(() => resolve({ code, raw, frames })));
  });
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: looking for them is the point
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/;

const example = readFileSync(join(root, 'deploy/examples/demo-staging.yaml'), 'utf8');
/** The example environment under another name (each test has its own environment). */
function exampleAs(name: string, edit: (text: string) => string = (t) => t): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, edit(example.replace(/^name: staging$/m, `name: ${name}`)));
  return file;
}

async function environmentNamed(name: string) {
  const { environments } = await callUnary(stack.environments, 'listEnvironments', {
    project: 'demo',
    pageSize: 500,
    pageToken: '',
  });
  return environments.find((e) => e.name === name);
}

describe('stageline CLI against a running stack', () => {
  it('apply creates the example environment; a second apply changes nothing and says so', async () => {
    const first = await cli(['apply', '-f', join(root, 'deploy/examples/demo-staging.yaml')]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('+ created environment demo/staging (runtime local)');
    expect(first.stdout).toContain('+ created stage "frontend"');
    expect(first.stdout).toMatch(/\+ added [A-Z]+ service api to stage "DEFAULT [A-Z]+"/);
    expect(first.stdout).toContain('+ added DATABASE service db to stage "DEFAULT DATABASE"');
    expect(first.stdout).toContain('+ added LIFECYCLE_JOB service bootstrap to stage "DEFAULT JOB"');
    expect(first.stdout).toContain('7 changes applied.');

    const env = (await environmentNamed('staging'))!;
    const { services } = await callUnary(stack.environments, 'listServices', { environmentId: env.id });
    expect(services.map((s) => s.name).sort()).toEqual(['api', 'bootstrap', 'db', 'web', 'worker']);
    const { pipeline } = await callUnary(stack.pipelines, 'getPipeline', { environmentId: env.id });
    expect(pipeline!.stages.map((s) => s.name)).toEqual([
      'DEFAULT DATABASE',
      'DEFAULT JOB',
      'DEFAULT CONTAINER',
      'DEFAULT APPLICATION',
      'frontend',
    ]);
    const before = services.map((s) => s.updatedAt?.toISOString()).join();

    const second = await cli(['apply', '-f', join(root, 'deploy/examples/demo-staging.yaml')]);
    expect(second.code).toBe(0);
    expect(second.stdout.trim()).toBe(
      `demo/staging is up to date with ${join(root, 'deploy/examples/demo-staging.yaml')}: no changes.`,
    );
    const after = (await callUnary(stack.environments, 'listServices', { environmentId: env.id })).services;
    expect(after.map((s) => s.updatedAt?.toISOString()).join()).toBe(before);

    const diff = await cli(['diff', '-f', join(root, 'deploy/examples/demo-staging.yaml')]);
    expect(diff.code).toBe(0);
    expect(diff.stdout).toContain('no changes: demo/staging matches');
  });

  it('every kind and field round-trips: a second apply and a diff see no change', async () => {
    const file = join(dir, 'kinds.yaml');
    writeFileSync(
      file,
      `project: demo
name: kinds
settings: { maxParallelBuilds: 2, maxParallelDeploys: 3, schedulingMode: STRICT, mirrorMode: SHARED, namespace: kinds-ns }
stages: [{ name: data }, { name: jobs, description: "before the apps" }, { name: apps }]
services:
  - name: db
    kind: DATABASE
    stage: data
    database: { engine: POSTGRESQL }
  - name: cache
    kind: DATABASE
    stage: data
    skipped: true
    database: { engine: REDIS, version: "7.2", image: "127.0.0.1:5001/examples/busybox:1.36" }
  - name: migrate
    kind: LIFECYCLE_JOB
    stage: jobs
    job: { container: { image: 127.0.0.1:5001/examples/busybox, tag: "1.36" }, onDeploy: true, onDelete: true, maxRetries: 2 }
  - name: nightly
    kind: CRON_JOB
    stage: jobs
    job:
      application: { gitUrl: "https://git.example.com/team/app.git", commit: 0123456789abcdef, rootPath: ./svc/ }
      schedule: "0 3 * * *"
  - name: app
    kind: APPLICATION
    stage: apps
    application: { gitUrl: "https://git.example.com/team/app.git", dockerfilePath: docker/Dockerfile, buildTarget: prod, ports: [{ port: 3000, public: true }] }
    buildResources: { cpuMillis: 1000 }
    readinessTimeoutSeconds: 60
    healthCheck: { http: { port: 3000 } }
    strategy: { maxSurge: 1 }
    chart: { path: deploy/chart/, valuesYaml: "replicas: 2\\n" }
    envVars:
      - { key: MODE, value: prod }
      - { key: TOKEN, value: s3cret, secret: true }
  - name: web
    kind: CONTAINER
    stage: apps
    container: { image: 127.0.0.1:5001/examples/busybox }
    healthCheck: { exec: { command: [cat, /www/index.html] }, initialDelaySeconds: 1 }
    strategy: { type: RECREATE }
    chart: { repository: { url: "oci://registry.example.com/charts/web" } }
`,
    );
    // --prune: the four default stages go, so that the file is the whole pipeline.
    const first = await cli(['apply', '-f', file, '--prune']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('- deleted stage "DEFAULT DATABASE"');
    const second = await cli(['apply', '-f', file, '--prune']);
    expect(second.stdout.trim()).toBe(`demo/kinds is up to date with ${file}: no changes.`);
    const diff = await cli(['diff', '-f', file, '--prune']);
    expect(diff.code).toBe(0);
    expect(diff.stdout).toContain('no changes: demo/kinds matches');
    const { services } = await callUnary(stack.environments, 'listServices', {
      environmentId: (await environmentNamed('kinds'))!.id,
    });
    expect(services).toHaveLength(6);
  });

  it('diff shows exactly the changes apply then makes; removed services go only with --prune', async () => {
    const base = exampleAs('drift');
    expect((await cli(['apply', '-f', base])).code).toBe(0);
    const edited = exampleAs('drift', (t) =>
      t
        .replace('Hello from Stageline: web is up, deployed after its backend.', 'Hello again')
        .replace(/ {2}- name: worker\n[\s\S]*?(?= {2}- name: web)/, '')
        .replace(
          '  - name: web\n',
          `  - name: cache\n    kind: CONTAINER\n    stage: DEFAULT CONTAINER\n    skipped: true\n    container: { image: 127.0.0.1:5001/examples/busybox, tag: "1.36" }\n\n  - name: web\n`,
        ),
    );
    const diff = await cli(['diff', '-f', edited]);
    expect(diff.code).toBe(1);
    expect(diff.stdout.split('\n').slice(1)).toEqual([
      '  + add CONTAINER service cache to stage "DEFAULT CONTAINER" (skipped)',
      '  ~ update service web',
      '      envVars.MESSAGE: "Hello from Stageline: web is up, deployed after its backend." → "Hello again"',
      `2 changes: stageline apply -f ${edited} makes them.`,
      '  ! service worker is not in the file: kept (--prune removes it)',
      '  secret values cannot be read back, so diff cannot compare them (api); apply sends them and reports whether they changed.',
      '',
    ]);

    const apply = await cli(['apply', '-f', edited]);
    expect(apply.code).toBe(0);
    expect(apply.stdout).toContain('2 changes applied.');
    expect((await cli(['diff', '-f', edited])).code).toBe(0);

    const prune = await cli(['diff', '-f', edited, '--prune']);
    expect(prune.code).toBe(1);
    expect(prune.stdout).toContain(`  - remove service worker\n1 change: stageline apply -f ${edited} makes it.`);
    expect((await cli(['apply', '-f', edited, '--prune'])).code).toBe(0);
    const env = (await environmentNamed('drift'))!;
    const { services } = await callUnary(stack.environments, 'listServices', { environmentId: env.id });
    expect(services.map((s) => [s.name, s.skipped]).sort()).toEqual([
      ['api', false],
      ['bootstrap', false],
      ['cache', true],
      ['db', false],
      ['web', false],
    ]);
  });

  it('an invalid file is refused with file:line:field and changes nothing', async () => {
    const bad = join(dir, 'invalid.yaml');
    writeFileSync(
      bad,
      [
        'project: demo',
        'name: invalid',
        'services:',
        '  - name: api',
        '    kind: CONTAINER',
        '    container:',
        '      image: 127.0.0.1:5001/examples/busybox',
        '      tag: 1.36',
        '  - name: web',
        '    kind: CONTAINR',
        '    container: { image: 127.0.0.1:5001/examples/busybox }',
        '',
      ].join('\n'),
    );
    const result = await cli(['apply', '-f', bad]);
    expect(result.code).toBe(2);
    expect(result.stderr.split('\n')).toEqual([
      `${bad}:8:12: services[0].container.tag: must be a string`,
      `${bad}:10:11: services[1].kind: must be one of "DATABASE", "LIFECYCLE_JOB", "CRON_JOB", "CONTAINER", "APPLICATION"`,
      'stageline: 2 problems in the environment file; nothing was changed.',
      '',
    ]);
    expect((await cli(['diff', '-f', bad])).code).toBe(2);
    expect(await environmentNamed('invalid')).toBeUndefined();
  });

  it('deploy --watch of the example exits 0 with plain timestamped lines off a terminal, and -o json matches the API', async () => {
    const file = exampleAs('live');
    expect((await cli(['apply', '-f', file])).code).toBe(0);
    const result = await cli(['deploy', 'demo/live', '--watch']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).not.toMatch(CONTROL);
    const [progress = '', summary = ''] = result.stdout.split('\n\n');
    for (const line of progress.split('\n'))
      expect(line).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (run|stage|db|bootstrap|api|worker|web) /);
    expect(progress).toMatch(/web step DEPLOYMENT SUCCESS in \d+\.\ds/);
    expect(summary).toMatch(/^deploy demo\/live: run \S+ SUCCEEDED in /);
    expect(summary).toMatch(
      // A wait for a worker slot shows as a step of its own when it was long enough to count (a loaded machine).
      / {6}web +DEPLOYED +(BUILD_QUEUEING \d+\.\ds · )?MIRROR_IMAGE \d+\.\ds.* · DEPLOYMENT \d+\.\ds {2}→ http:\/\/127\.0\.0\.1:\d+/,
    );
    const url = /→ (http:\/\/127\.0\.0\.1:\d+)/.exec(summary)![1]!;
    expect(await (await fetch(url)).text()).toBe('Hello from Stageline: web is up, deployed after its backend.\n');

    const env = (await environmentNamed('live'))!;
    const history = await cli(['history', 'demo/live', '-o', 'json']);
    expect(history.code).toBe(0);
    const runs = await callUnary(stack.deployments, 'listDeployments', {
      environmentId: env.id,
      pageSize: 20,
      pageToken: '',
    });
    expect(JSON.parse(history.stdout)).toEqual(control.ListDeploymentsResponse.toJSON(runs));
    const runId = runs.deployments[0]!.id;
    const show = await cli(['show', runId, '-o', 'json']);
    expect(JSON.parse(show.stdout)).toEqual(
      control.GetDeploymentResponse.toJSON(
        await callUnary(stack.deployments, 'getDeployment', { deploymentId: runId }),
      ),
    );
    const pipeline = await cli(['pipeline', 'demo/live', '-o', 'yaml']);
    const { parse } = createRequire(join(root, 'packages/cli/package.json'))('yaml') as { parse(s: string): unknown };
    expect(parse(pipeline.stdout)).toEqual(
      control.GetPipelineResponse.toJSON(await callUnary(stack.pipelines, 'getPipeline', { environmentId: env.id })),
    );
    // Release history, through control's public face (the deploy service's ReleaseService is internal).
    const releases = await cli(['releases', 'demo/live', '--service', 'web']);
    expect(releases.code, releases.stderr).toBe(0);
    expect(releases.stdout).toMatch(/^REVISION\s+STATUS/m);
    expect(releases.stdout).toMatch(new RegExp(`^1\\s+DEPLOYED\\s+.*${runId}`, 'm'));
  });

  it('a failing run exits 1 and shows the failing step with its last log lines', async () => {
    const file = join(dir, 'failing.yaml');
    const [image, tag] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
    writeFileSync(
      file,
      `project: demo
name: failing
stages: [{ name: migrations }]
services:
  - name: migrate
    kind: CONTAINER
    stage: migrations
    container: { image: ${image}, tag: "${tag}" }
    envVars:
      - key: EXAMPLE_SCRIPT
        value: "echo marker-before-failure; exit 3"
`,
    );
    expect((await cli(['apply', '-f', file])).code).toBe(0);
    const result = await cli(['deploy', 'demo/failing', '--watch']);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/run \S+ FAILED/);
    expect(result.stdout).toMatch(/migrate +DEPLOYMENT_ERROR/);
    expect(result.stdout).toMatch(/migrate failed in DEPLOYMENT: .*code 3/);
    const logs = result.stdout.slice(result.stdout.indexOf('last log lines of DEPLOYMENT:'));
    expect(logs).toContain('│ ');
    expect(logs).toContain('marker-before-failure');
    // Without --watch the request itself succeeded: exit 0.
    const again = await cli(['deploy', 'demo/failing']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^deploy demo\/failing: run \S+ (QUEUED|RUNNING)/);
  });

  it('the live view, on a 100x30 terminal, shows every stage and service while the run goes', async () => {
    const file = join(dir, 'pty.yaml');
    const [image, tag] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
    const svc = (name: string, stage: string) =>
      `  - name: ${name}\n    kind: CONTAINER\n    stage: ${stage}\n    container: { image: ${image}, tag: "${tag}" }\n`;
    writeFileSync(
      file,
      `project: demo\nname: tty\nstages: [{ name: data }, { name: backend }, { name: edge }]\nservices:\n${svc('store', 'data')}${svc('api', 'backend')}${svc('jobs', 'backend')}${svc('gateway', 'edge')}`,
    );
    expect((await cli(['apply', '-f', file, '--prune'])).code).toBe(0);
    const { code, raw, frames } = await cliInPty(['deploy', 'demo/tty', '--watch'], 100, 30);
    expect(code).toBe(0);
    // It redrew in place (cursor movement), rather than printing lines.
    expect(raw).toContain('\x1b[?25l');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: a cursor movement is what it looks for
    expect(raw).toMatch(/\x1b\[\d+F/);
    const live = frames.filter((f) => /services finished|waiting in the environment's queue/.test(f));
    expect(live.length).toBeGreaterThan(1);
    for (const f of live) {
      for (const name of ['data', 'backend', 'edge', 'store', 'api', 'jobs', 'gateway'])
        expect(f).toMatch(new RegExp(`\\b${name}\\b`));
      const rows = f.split('\n');
      expect(rows[0]).toMatch(/^deploy demo\/tty {2}run \S+ {2}(QUEUED|RUNNING|SUCCEEDED)/);
      // Stages in pipeline order.
      expect(f.indexOf(' data ')).toBeLessThan(f.indexOf(' backend '));
      expect(f.indexOf(' backend ')).toBeLessThan(f.indexOf(' edge '));
    }
    expect(live.some((f) => /DEPLOYING|MIRRORING/.test(f))).toBe(true);
    // The live frame is gone at the end; the summary stays.
    const last = frames.at(-1)!;
    expect(last).toMatch(/deploy demo\/tty: run \S+ SUCCEEDED/);
    expect(last).not.toContain('services finished');
  });

  it('a tour: skip, plan, stop, logs, rollback', async () => {
    const file = exampleAs('tour');
    expect((await cli(['apply', '-f', file])).code).toBe(0);
    expect((await cli(['deploy', 'demo/tour', '--watch'])).code).toBe(0);
    const firstRun = JSON.parse((await cli(['history', 'demo/tour', '-o', 'json'])).stdout).deployments[0].id as string;

    // Deployed and unchanged: the plan predicts that nothing would be built or copied.
    const again = await cli(['plan', 'demo/tour']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/api +clone → build \(cache hit\) → deploy/);
    expect(again.stdout).toMatch(/web +mirror \(cache hit\) → deploy/);
    expect(again.stdout).toMatch(
      /builds and mirrors:\n(.*\n)* +api +predicted cache hit: key [0-9a-f]{64}: the mirror already has /,
    );

    const skip = await cli(['service', 'skip', 'worker', '-e', 'demo/tour']);
    expect(skip.code).toBe(0);
    expect(skip.stdout).toContain('service worker is skipped');
    const plan = await cli(['plan', 'demo/tour', '--action', 'stop']);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(/worker +skip/);
    expect(plan.stdout).toMatch(/web +stop/);

    const stop = await cli(['stop', 'demo/tour', '--watch']);
    expect(stop.code).toBe(0);
    expect(stop.stdout).toMatch(/web +STOPPED/);
    expect(stop.stdout).toMatch(/worker +SKIPPED/);

    const logs = await cli(['logs', 'demo/tour', '--run', firstRun, '--service', 'web', '--step', 'deployment']);
    expect(logs.code).toBe(0);
    const lines = logs.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toMatch(/^\S+Z web +DEPLOYMENT /);

    const rollback = await cli(['rollback', 'demo/tour', '--to', firstRun, '--watch']);
    expect(rollback.code).toBe(0);
    expect(rollback.stdout).toMatch(/rollback demo\/tour: run \S+ SUCCEEDED/);
    expect(rollback.stdout).toMatch(/web +DEPLOYED/);

    // One service at a given version (deploy's --version, not the program's).
    const one = await cli(['deploy', 'demo/tour', '--service', 'web', '--version', 'tag:1.36', '--watch']);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/deploy demo\/tour \(web\): run \S+ SUCCEEDED/);
    const version = await cli(['--version']);
    expect(version.stdout).toBe('0.1.0\n');
  });

  it('Ctrl-C stops watching, not the run; cancel --watch exits 0 once the run is CANCELED', async () => {
    const file = join(dir, 'slow.yaml');
    const [image, tag] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
    // Never ready: nothing listens on the probed port, so the deploy waits until it is canceled.
    writeFileSync(
      file,
      `project: demo
name: slow
services:
  - name: slow
    kind: CONTAINER
    container: { image: ${image}, tag: "${tag}", ports: [{ port: 9999 }] }
    envVars: [{ key: EXAMPLE_SCRIPT, value: "sleep 600" }]
    healthCheck: { tcp: { port: 9999 }, periodSeconds: 1 }
    readinessTimeoutSeconds: 300
`,
    );
    expect((await cli(['apply', '-f', file])).code).toBe(0);
    const started = await cli(['deploy', 'demo/slow', '-o', 'json']);
    expect(started.code).toBe(0);
    const runId = (JSON.parse(started.stdout) as { deployment: { id: string } }).deployment.id;

    // Follow it until the deploy is under way, then Ctrl-C.
    const watcher = spawn(process.execPath, [main, '--address', address(), 'watch', runId], {
      env: cliEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const exited = new Promise<number | null>((resolve) => watcher.on('close', (code) => resolve(code)));
    await new Promise<void>((resolve) => {
      watcher.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('slow step DEPLOYMENT started')) resolve();
      });
    });
    watcher.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(out).toContain(`stopped watching: run ${runId} goes on.`);
    const still = await callUnary(stack.deployments, 'getDeployment', { deploymentId: runId });
    expect(control.deploymentStatusToJSON(still.deployment!.status)).toBe('DEPLOYMENT_STATUS_RUNNING');

    const cancel = await cli(['cancel', runId, '--watch']);
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toMatch(new RegExp(`run ${runId} CANCELED`));
  });

  it('explain-build asks control, which asks the build service; says clearly when Stageline is unreachable', async () => {
    expect((await cli(['apply', '-f', exampleAs('explain')])).code).toBe(0);
    // Through control's ExplainBuild to the build service (mutual TLS): it answers for a service never built.
    const explain = await cli(['explain-build', 'demo/explain', '--service', 'api']);
    expect(explain.code).toBe(3);
    expect(explain.stderr).toMatch(/NOT_FOUND: .*build of service "[0-9a-f-]+" not found/);

    const down = await cli(['env', 'list', '--address', '127.0.0.1:1']);
    expect(down.code).toBe(3);
    expect(down.stderr).toContain('cannot reach Stageline at 127.0.0.1:1');
    expect(down.stderr).toContain('the address came from --address');
  });
});
