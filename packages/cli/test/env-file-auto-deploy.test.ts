import { control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { EnvironmentFileError, formatProblem, loadEnvironmentFile } from '../src/env-file/load.ts';
import { desiredEnvironment, flattenDefinition, normalizedDefinition } from '../src/env-file/model.ts';

// A service's autoDeploy in the environment file: sent as written (so `apply` keeps what
// `stageline auto-deploy service` set when the file says the same), compared without false diffs.

const FILE = `project: demo
name: auto
services:
  - name: api
    kind: APPLICATION
    application: { gitUrl: "https://git.example.com/team/app.git" }
    autoDeploy:
      enabled: true
      includePaths: ["./api/**"]
      excludePaths: ["**/*.md"]
  - name: box
    kind: CONTAINER
    container: { image: registry.example.com/box, tag: "1.0" }
    autoDeploy: { enabled: true, tagPattern: "1.*" }
`;

describe('autoDeploy in the environment file', () => {
  it('is read, sent, and compares equal to what the server reads back', () => {
    const desired = desiredEnvironment(loadEnvironmentFile('env.yaml', FILE), {});
    const [api, box] = desired.services;
    expect(api!.definition.autoDeploy).toEqual({
      enabled: true,
      includePaths: ['./api/**'],
      excludePaths: ['**/*.md'],
      tagPattern: '',
    });
    // The server strips the leading "./"; the comparison does too.
    const served = control.Service.fromPartial({
      ...api!.definition,
      autoDeploy: { enabled: true, includePaths: ['api/**'], excludePaths: ['**/*.md'], tagPattern: '' },
    });
    expect(flattenDefinition(served)).toEqual(flattenDefinition(api!.definition));
    expect(normalizedDefinition(box!.definition).autoDeploy).toEqual({
      enabled: true,
      includePaths: [],
      excludePaths: [],
      tagPattern: '1.*',
    });
    // Without it in the file, a served autoDeploy shows as a change (apply turns it off).
    const bare = control.Service.fromPartial({ ...api!.definition, autoDeploy: undefined });
    expect(flattenDefinition(bare)).not.toEqual(flattenDefinition(api!.definition));
  });

  it('a bad tag pattern or an unknown key is refused, naming the field', () => {
    let problems: string[] = [];
    try {
      desiredEnvironment(
        loadEnvironmentFile('env.yaml', FILE.replace('tagPattern: "1.*"', 'tagPattern: "a b", every: 5')),
        {},
      );
    } catch (e) {
      if (!(e instanceof EnvironmentFileError)) throw e;
      problems = e.problems.map(formatProblem);
    }
    expect(problems.some((p) => p.includes('services[1].autoDeploy.tagPattern'))).toBe(true);
    expect(problems.some((p) => p.includes('services[1].autoDeploy') && p.includes('every'))).toBe(true);
  });
});
