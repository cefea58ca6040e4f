import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { EnvironmentFileError, type FileProblem, formatProblem, loadEnvironmentFile } from '../src/env-file/load.ts';
import { desiredEnvironment, normalizedDefinition } from '../src/env-file/model.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));

function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): FileProblem[] {
  try {
    desiredEnvironment(loadEnvironmentFile('env.yaml', text), env);
  } catch (e) {
    if (e instanceof EnvironmentFileError) return e.problems;
    throw e;
  }
  throw new Error('the file was accepted');
}

const VALID = `project: demo
name: staging
services:
  - name: api
    kind: CONTAINER
    container:
      image: registry.example.com/team/api
      tag: "1.2"
`;

describe('environment file', () => {
  it('describes the same environment as the JSON example (deploy/examples/demo-staging.{yaml,json})', () => {
    const desired = desiredEnvironment(loadEnvironmentFile(`${root}/deploy/examples/demo-staging.yaml`), {});
    const json = JSON.parse(readFileSync(`${root}/deploy/examples/demo-staging.json`, 'utf8')) as {
      project: string;
      name: string;
      runtime?: string;
      settings?: unknown;
      stages: { name: string; description?: string }[];
      services: { stage: string; skipped?: boolean; service: unknown }[];
    };
    expect(desired.project).toBe(json.project);
    expect(desired.name).toBe(json.name);
    expect(desired.runtime).toBe(json.runtime ?? 'local');
    const settings = control.EnvironmentSettings.fromJSON(json.settings ?? {});
    expect(desired.settings.maxParallelBuilds).toBe(settings.maxParallelBuilds ?? 7);
    expect(desired.settings.maxParallelDeploys).toBe(settings.maxParallelDeploys ?? 7);
    expect(desired.settings.schedulingMode).toBe(settings.schedulingMode || 1);
    expect(desired.settings.mirrorMode).toBe(settings.mirrorMode || 1);
    expect(desired.stages?.map((s) => ({ name: s.name, description: s.description }))).toEqual(
      json.stages.map((s) => ({ name: s.name, description: s.description ?? '' })),
    );
    expect(desired.services.map((s) => s.name)).toEqual(
      json.services.map((s) => control.Service.fromJSON(s.service).name),
    );
    for (const [i, entry] of json.services.entries()) {
      const want = desired.services[i]!;
      expect(want.stage).toBe(entry.stage);
      expect(want.skipped).toBe(entry.skipped ?? false);
      const fromJson = control.Service.fromJSON(entry.service);
      // Secret values included: both files carry the same ones.
      expect(want.definition.envVars).toEqual(fromJson.envVars);
      expect(control.Service.toJSON(normalizedDefinition(want.definition))).toEqual(
        control.Service.toJSON(normalizedDefinition(fromJson)),
      );
    }
  });

  it('accepts a minimal file and fills in the defaults', () => {
    const desired = desiredEnvironment(loadEnvironmentFile('env.yaml', VALID), {});
    expect(desired.runtime).toBe('local');
    expect(desired.settings).toMatchObject({ maxParallelBuilds: 7, maxParallelDeploys: 7, namespace: 'demo-staging' });
    expect(desired.stages).toBeUndefined();
    const api = desired.services[0]!;
    expect(api.definition.source).toEqual({
      $case: 'container',
      value: { image: 'registry.example.com/team/api', tag: '1.2', ports: [] },
    });
    expect(api.stage).toBeUndefined();
  });

  it('reports an unknown field at the line of its key', () => {
    const problems = problemsOf(`${VALID}    replicas: 3\n`);
    expect(problems.map(formatProblem)).toEqual(['env.yaml:9:5: services[0].replicas: is not a known field']);
  });

  it('reports a wrong type with file, line, column and field', () => {
    const problems = problemsOf(VALID.replace('tag: "1.2"', 'tag: 1.2'));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ file: 'env.yaml', line: 8, column: 12, field: 'services[0].container.tag' });
    expect(problems[0]!.message).toBe('must be a string');
  });

  it('reports a missing source for the kind, and a source that does not fit it', () => {
    const problems = problemsOf(`project: demo
name: staging
services:
  - name: db
    kind: DATABASE
    container:
      image: postgres
`);
    expect(problems.map(formatProblem)).toEqual([
      'env.yaml:4:5: services[0]: database is required for a DATABASE',
      'env.yaml:6:5: services[0].container: does not apply to a DATABASE service',
    ]);
  });

  it('reports several problems at once, in file order', () => {
    const problems = problemsOf(`project: Demo
name: staging
settings:
  maxParallelBuilds: 9
services:
  - name: api
    kind: CONTAINR
`);
    expect(problems.map((p) => `${p.line}:${p.field}`)).toEqual([
      '1:project',
      '4:settings.maxParallelBuilds',
      '7:services[0].kind',
    ]);
    expect(problems[0]!.message).toMatch(/DNS label/);
    expect(problems[1]!.message).toBe('must be <= 7');
    expect(problems[2]!.message).toMatch(/must be one of "DATABASE"/);
  });

  it('reports YAML syntax errors with their position', () => {
    const problems = problemsOf('project: demo\nname: [staging\n');
    expect(problems[0]).toMatchObject({ file: 'env.yaml', line: 3 });
    const dup = problemsOf('project: demo\nname: a\nname: b\n');
    expect(dup[0]).toMatchObject({ line: 3, column: 1 });
    expect(dup[0]!.message).toMatch(/unique/);
  });

  it('checks what the schema cannot: duplicates, stage references, env var values', () => {
    const problems = problemsOf(
      `project: demo
name: staging
stages:
  - name: one
services:
  - name: api
    kind: CONTAINER
    stage: two
    container: { image: busybox }
    envVars:
      - key: TOKEN
        fromEnv: NOT_SET_ANYWHERE
      - key: PLAIN
  - name: api
    kind: CONTAINER
    container: { image: busybox }
`,
      {},
    );
    expect(problems.map(formatProblem)).toEqual([
      'env.yaml:8:12: services[0].stage: "two" is not one of the stages listed in this file',
      'env.yaml:12:18: services[0].envVars[0].fromEnv: NOT_SET_ANYWHERE is not set in this shell',
      'env.yaml:13:9: services[0].envVars[1]: needs a value (or fromEnv)',
      'env.yaml:14:11: services[1].name: service api is listed twice (also services[0])',
    ]);
  });

  it('takes a value from the environment with fromEnv', () => {
    const desired = desiredEnvironment(
      loadEnvironmentFile(
        'env.yaml',
        `${VALID}    envVars:\n      - key: TOKEN\n        fromEnv: MY_TOKEN\n        secret: true\n`,
      ),
      { MY_TOKEN: 's3cret' },
    );
    expect(desired.services[0]!.definition.envVars).toEqual([{ key: 'TOKEN', value: 's3cret', secret: true }]);
    expect(desired.services[0]!.sendsSecretValues).toBe(true);
  });

  it('knows every kind: jobs, applications, databases, health checks', () => {
    const desired = desiredEnvironment(
      loadEnvironmentFile(
        'env.yaml',
        `project: demo
name: full
services:
  - name: migrate
    kind: LIFECYCLE_JOB
    job:
      container: { image: busybox, tag: "1.36" }
      onDeploy: true
      maxDurationSeconds: 60
  - name: nightly
    kind: CRON_JOB
    job:
      application: { gitUrl: "https://git.example.com/team/app.git", branch: main }
      schedule: "0 3 * * *"
  - name: app
    kind: APPLICATION
    application:
      gitUrl: "https://git.example.com/team/app.git"
      dockerfilePath: docker/Dockerfile
      ports: [{ port: 3000, public: true }]
    buildResources: { cpuMillis: 2000, memoryMib: 2048 }
    healthCheck: { exec: { command: [cat, /tmp/ready] } }
  - name: db
    kind: DATABASE
    database: { engine: POSTGRESQL, version: "16" }
`,
      ),
      {},
    );
    const [migrate, nightly, app, db] = desired.services;
    expect(migrate!.kind).toBe(control.ServiceKind.SERVICE_KIND_LIFECYCLE_JOB);
    expect(migrate!.definition.source).toMatchObject({
      $case: 'job',
      value: { onDeploy: true, maxDurationSeconds: 60 },
    });
    expect(nightly!.definition.source).toMatchObject({ $case: 'job', value: { schedule: '0 3 * * *' } });
    expect(app!.definition.healthCheck?.probe).toEqual({ $case: 'exec', value: { command: ['cat', '/tmp/ready'] } });
    expect(db!.definition.source).toEqual({
      $case: 'database',
      value: { engine: control.DatabaseEngine.DATABASE_ENGINE_POSTGRESQL, version: '16', mode: 0, image: '' },
    });
  });

  it('refuses a lifecycle job without an event and a cron job without a schedule', () => {
    const problems = problemsOf(`project: demo
name: jobs
services:
  - name: a
    kind: LIFECYCLE_JOB
    job: { container: { image: busybox } }
  - name: b
    kind: CRON_JOB
    job: { container: { image: busybox }, onDeploy: true }
`);
    expect(problems.map(formatProblem)).toEqual([
      'env.yaml:6:10: services[0].job: a LIFECYCLE_JOB runs on at least one of onDeploy, onStop, onDelete',
      'env.yaml:9:10: services[1].job: schedule is required',
      'env.yaml:9:53: services[1].job.onDeploy: must be false',
    ]);
  });
});

describe('rollout strategy and custom chart', () => {
  it('reads them, with counts as text, and refuses them where they do not apply', () => {
    const desired = desiredEnvironment(
      loadEnvironmentFile(
        'env.yaml',
        `project: demo
name: charts
runtime: kubernetes
services:
  - name: app
    kind: APPLICATION
    application: { gitUrl: "https://git.example.com/team/app.git" }
    strategy: { type: ROLLING_UPDATE, maxSurge: 1, maxUnavailable: "0%" }
    chart:
      path: deploy/chart
      valuesYaml: |
        replicas: 2
  - name: web
    kind: CONTAINER
    container: { image: nginx }
    strategy: { type: RECREATE }
    chart: { repository: { url: "https://charts.example.com", name: web, version: "1.2.3" } }
`,
      ),
      {},
    );
    const [app, web] = desired.services;
    expect(app!.definition.strategy).toEqual({
      type: control.DeploymentStrategyType.DEPLOYMENT_STRATEGY_TYPE_ROLLING_UPDATE,
      maxSurge: '1',
      maxUnavailable: '0%',
    });
    expect(app!.definition.chart).toEqual({
      source: { $case: 'path', value: 'deploy/chart' },
      valuesYaml: 'replicas: 2\n',
    });
    expect(web!.definition.chart?.source).toEqual({
      $case: 'repository',
      value: { url: 'https://charts.example.com', name: 'web', version: '1.2.3' },
    });
    expect(
      problemsOf(`project: demo
name: bad
services:
  - name: db
    kind: DATABASE
    database: { engine: REDIS }
    strategy: { type: RECREATE }
  - name: web
    kind: CONTAINER
    container: { image: nginx }
    strategy: { maxSurge: lots }
    chart: { path: chart }
`).map(formatProblem),
    ).toEqual([
      'env.yaml:7:5: services[0].strategy: does not apply to a DATABASE service',
      'env.yaml:11:27: services[1].strategy.maxSurge: must be a number of pods (1) or a percentage ("25%")',
      'env.yaml:12:14: services[1].chart.path: does not apply to a CONTAINER service',
    ]);
  });
});
