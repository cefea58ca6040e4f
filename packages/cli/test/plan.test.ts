import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { EnvironmentFileError, loadEnvironmentFile } from '../src/env-file/load.ts';
import { desiredEnvironment, normalizedDefinition } from '../src/env-file/model.ts';
import { type CurrentState, DEFAULT_STAGES, describeChange, planApply } from '../src/env-file/plan.ts';

// The planner behind apply and diff, against a "current state" shaped like the server's answers
// (defaults filled in, secret values blanked), without a server.

const FILE = `project: demo
name: staging
settings:
  maxParallelDeploys: 3
stages:
  - name: DEFAULT DATABASE
  - name: DEFAULT JOB
  - name: DEFAULT CONTAINER
  - name: DEFAULT APPLICATION
  - name: frontend
    description: after the backend
services:
  - name: api
    kind: CONTAINER
    stage: DEFAULT CONTAINER
    container: { image: registry.example.com/api, tag: "1.0", ports: [{ port: 8080 }] }
    envVars:
      - { key: MODE, value: prod }
      - { key: TOKEN, value: t0k3n, secret: true }
  - name: web
    kind: CONTAINER
    stage: frontend
    skipped: true
    container: { image: registry.example.com/web }
`;

const desired = (text: string) => desiredEnvironment(loadEnvironmentFile('env.yaml', text), {});

/** What the server would read back after applying `text`: ids, defaults, secrets blanked. */
function serverStateOf(text: string): CurrentState {
  const d = desired(text);
  const names = d.stages?.map((s) => s.name) ?? DEFAULT_STAGES;
  const stages = names.map((name, order) => ({
    id: `stage-${name}`,
    name,
    description: d.stages?.find((s) => s.name === name)?.description ?? '',
    order,
    serviceIds: d.services.filter((s) => s.stage === name).map((s) => `svc-${s.name}`),
  }));
  return {
    environment: control.Environment.fromPartial({
      id: 'env-1',
      project: d.project,
      name: d.name,
      runtime: d.runtime,
      settings: d.settings,
    }),
    pipeline: { environmentId: 'env-1', stages },
    services: d.services.map((s) => ({
      ...normalizedDefinition(s.definition),
      id: `svc-${s.name}`,
      environmentId: 'env-1',
      stageId: `stage-${s.stage}`,
      skipped: s.skipped,
    })),
  };
}

const lines = (changes: ReturnType<typeof planApply>['changes']) =>
  changes.flatMap((c) => {
    const d = describeChange(c, 'future');
    return [`${d.mark} ${d.text}`, ...d.fields.map((f) => `    ${f}`)];
  });

describe('planApply (what apply does, what diff shows)', () => {
  it('sees no change when the server already has what the file says', () => {
    const plan = planApply(desired(FILE), serverStateOf(FILE), { prune: false });
    expect(plan.changes).toEqual([]);
    expect(plan.notes).toEqual([]);
  });

  it('creates a missing environment: only what the four default stages do not already give', () => {
    const plan = planApply(
      desired(FILE),
      { environment: undefined, pipeline: undefined, services: [] },
      { prune: false },
    );
    expect(lines(plan.changes)).toEqual([
      '+ create environment demo/staging (runtime local)',
      '+ create stage "frontend"',
      '    description: "after the backend"',
      '+ add CONTAINER service api to stage "DEFAULT CONTAINER"',
      '+ add CONTAINER service web to stage "frontend" (skipped)',
    ]);
  });

  it('lists exactly the fields that differ', () => {
    const edited = FILE.replace('tag: "1.0"', 'tag: "1.1"')
      .replace('{ key: MODE, value: prod }', '{ key: MODE, value: staging }')
      .replace('maxParallelDeploys: 3', 'maxParallelDeploys: 5')
      .replace('    skipped: true\n', '');
    const plan = planApply(desired(edited), serverStateOf(FILE), { prune: false });
    expect(lines(plan.changes)).toEqual([
      '~ update settings',
      '    maxParallelDeploys: 3 → 5',
      '~ update service api',
      '    container.tag: "1.0" → "1.1"',
      '    envVars.MODE: "prod" → "staging"',
      '~ unskip service web',
    ]);
  });

  it('keeps services and stages the file drops, unless pruning', () => {
    const smaller = FILE.slice(0, FILE.indexOf('  - name: web')).replace(
      '  - name: frontend\n    description: after the backend\n',
      '',
    );
    const kept = planApply(desired(smaller), serverStateOf(FILE), { prune: false });
    expect(kept.changes).toEqual([]);
    expect(kept.notes).toEqual([
      { op: 'keep-stage', stage: 'frontend' },
      { op: 'keep-service', service: 'web' },
    ]);
    const pruned = planApply(desired(smaller), serverStateOf(FILE), { prune: true });
    expect(lines(pruned.changes)).toEqual(['- delete stage "frontend"', '- remove service web']);
  });

  it('moves stages into the file order and services into their stages', () => {
    const reordered = FILE.replace(
      '  - name: DEFAULT DATABASE\n  - name: DEFAULT JOB\n',
      '  - name: DEFAULT JOB\n  - name: DEFAULT DATABASE\n',
    ).replace('stage: frontend', 'stage: DEFAULT CONTAINER');
    const plan = planApply(desired(reordered), serverStateOf(FILE), { prune: false });
    expect(lines(plan.changes)).toEqual([
      '~ move stage "DEFAULT JOB" from position 1 to 0',
      '~ move service web from stage "frontend" to "DEFAULT CONTAINER"',
    ]);
    expect(plan.stageOrder).toEqual([
      'DEFAULT JOB',
      'DEFAULT DATABASE',
      'DEFAULT CONTAINER',
      'DEFAULT APPLICATION',
      'frontend',
    ]);
  });

  it('replaces a service whose kind changes', () => {
    const changed = FILE.replace(
      '    kind: CONTAINER\n    stage: frontend\n    skipped: true\n    container: { image: registry.example.com/web }',
      '    kind: DATABASE\n    stage: frontend\n    skipped: true\n    database: { engine: REDIS }',
    );
    expect(lines(planApply(desired(changed), serverStateOf(FILE), { prune: false }).changes)).toEqual([
      '~ replace service web: its kind changes from CONTAINER to DATABASE',
    ]);
  });

  it('cannot compare secret values, and does not pretend they changed', () => {
    const newSecret = FILE.replace('value: t0k3n', 'value: other');
    expect(planApply(desired(newSecret), serverStateOf(FILE), { prune: false }).changes).toEqual([]);
    const noLongerSecret = FILE.replace('value: t0k3n, secret: true', 'value: t0k3n');
    expect(lines(planApply(desired(noLongerSecret), serverStateOf(FILE), { prune: false }).changes)).toEqual([
      '~ update service api',
      '    envVars.TOKEN: (secret) → "t0k3n"',
    ]);
  });

  it('points at the file when the environment cannot take it', () => {
    const current = serverStateOf(FILE);
    current.environment!.runtime = 'kubernetes';
    const noStages = FILE.replace(/stages:[\s\S]*?services:/, 'services:');
    try {
      planApply(desired(noStages), { ...current, pipeline: { environmentId: 'env-1', stages: [] } }, { prune: false });
      throw new Error('accepted');
    } catch (e) {
      expect(e).toBeInstanceOf(EnvironmentFileError);
      expect((e as EnvironmentFileError).message.split('\n')).toEqual([
        'env.yaml:1:1: runtime: the environment runs on "kubernetes": the runtime cannot change (delete the environment and apply again)',
        'env.yaml:8:12: services[0].stage: "DEFAULT CONTAINER" is not a stage of the environment',
        'env.yaml:15:12: services[1].stage: "frontend" is not a stage of the environment',
      ]);
    }
  });
});
