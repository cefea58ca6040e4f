// The floor of an unchanged deploy on podman: podman's own time to look at the environment's running
// containers (`podman container inspect`, one after the other, as a deploy in stage order would), plus one
// commit and one publish per stage. An unchanged DEPLOY or REDEPLOY cannot take less: it must at least
// see that each container still runs (then probe it once, which this floor leaves out).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { control } from '@stageline/proto';
import type { Floor } from './floor.ts';

const run = promisify(execFile);

export interface PodmanFloor {
  /** Containers inspected (the environment's, without the pods' infra containers). */
  containers: number;
  /** podman's time for them, one after the other. */
  inspectMs: number;
  /** Stages of the run: one commit and one publish each. */
  stages: number;
  /** inspectMs + stages × (one commit + one publish). */
  ms: number;
}

/** The running containers of an environment's pods (its pods carry the environment's id in their labels). */
async function containersOf(environmentId: string): Promise<string[]> {
  const pods = (await run('podman', ['pod', 'ps', '--format', '{{.ID}} {{.Labels}}'])).stdout
    .split('\n')
    .filter((line) => line.includes(environmentId))
    .map((line) => line.split(' ')[0]!)
    .filter(Boolean);
  const names: string[] = [];
  for (const pod of pods) {
    const listed = (await run('podman', ['ps', '--filter', `pod=${pod}`, '--format', '{{.Names}} {{.IsInfra}}']))
      .stdout;
    for (const line of listed.split('\n')) {
      const [name, infra] = line.split(' ');
      if (name && infra !== 'true') names.push(name);
    }
  }
  return names;
}

/** Measures the floor for `run`'s environment, whose pods run now. */
export async function measurePodmanFloor(
  environmentId: string,
  deployment: control.Deployment,
  floor: Floor | undefined,
): Promise<PodmanFloor> {
  const containers = await containersOf(environmentId);
  const t0 = performance.now();
  for (const name of containers) await run('podman', ['container', 'inspect', name]);
  const inspectMs = performance.now() - t0;
  const stages = new Set(deployment.services.map((s) => s.stageId)).size;
  return {
    containers: containers.length,
    inspectMs,
    stages,
    ms: inspectMs + stages * (floor?.transitionMs ?? 0),
  };
}
