// Applying a file: read what the server has, plan, and make the calls the plan lists, in an order
// that always works (stages before the services that go into them; prune after moves).
import * as grpc from '@grpc/grpc-js';
import { callUnary, fieldOf, isServiceError } from '@stageline/grpc';
import { control } from '@stageline/proto';
import type { Clients } from '../context.ts';
import { EnvironmentFileError, type FieldPath } from './load.ts';
import type { DesiredEnvironment, DesiredService } from './model.ts';
import { type Change, type CurrentState, type Plan, planApply } from './plan.ts';

export async function readCurrent(clients: Clients, desired: DesiredEnvironment): Promise<CurrentState> {
  let pageToken = '';
  let found: control.Environment | undefined;
  do {
    const page = await callUnary(clients.environments, 'listEnvironments', {
      project: desired.project,
      pageSize: 500,
      pageToken,
    });
    found =
      page.environments.find(
        (e) => e.name === desired.name && e.status !== control.EnvironmentStatus.ENVIRONMENT_STATUS_DELETED,
      ) ?? found;
    pageToken = page.nextPageToken;
  } while (pageToken !== '' && !found);
  if (!found) return { environment: undefined, pipeline: undefined, services: [] };
  const [{ environment, pipeline }, { services }] = await Promise.all([
    callUnary(clients.environments, 'getEnvironment', { environmentId: found.id }),
    callUnary(clients.environments, 'listServices', { environmentId: found.id }),
  ]);
  return { environment, pipeline, services };
}

/** snake_case request path from the server (`service.env_vars[0].key`) → the file's field path. */
function fileFieldOf(serverField: string | undefined, base: FieldPath): FieldPath | undefined {
  if (!serverField) return undefined;
  const parts = serverField.split('.');
  const root = parts.shift();
  if (root !== 'service' && root !== 'settings') return undefined;
  const path: FieldPath = root === 'settings' ? ['settings'] : [...base];
  for (const part of parts) {
    const m = /^([a-z0-9_]+)((?:\[\d+\])*)$/.exec(part);
    if (!m) return path;
    path.push(m[1]!.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()));
    for (const idx of m[2]!.matchAll(/\[(\d+)\]/g)) path.push(Number(idx[1]));
  }
  return path;
}

/** A refusal about a field of the file points at that field (file:line), else it goes up unchanged. */
function pointInFile(e: unknown, desired: DesiredEnvironment, base: FieldPath): never {
  if (isServiceError(e)) {
    const path = fileFieldOf(fieldOf(e), base);
    if (path) {
      const field = fieldOf(e)!;
      const message = e.details.startsWith(`${field}: `) ? e.details.slice(field.length + 2) : e.details;
      throw new EnvironmentFileError([desired.source.problem(path, `${message} (refused by the server)`)], 'apply');
    }
  }
  throw e;
}

export interface ApplyResult {
  environment: control.Environment;
  plan: Plan;
  /** What was done: the plan's changes, plus secret values the server found changed. */
  applied: Change[];
}

const definitionFor = (s: DesiredService, id: string, stageId: string, skipped: boolean): control.Service => ({
  ...s.definition,
  id,
  stageId,
  skipped,
});

export async function applyEnvironment(
  clients: Clients,
  desired: DesiredEnvironment,
  options: { prune: boolean },
): Promise<ApplyResult> {
  const current = await readCurrent(clients, desired);
  const plan = planApply(desired, current, options);
  const applied: Change[] = [];
  const settings = control.EnvironmentSettings.fromPartial({
    ...desired.settings,
    // The default namespace is stored as empty, so that it follows the environment's name.
    namespace: desired.source.content.settings?.namespace === undefined ? '' : desired.settings.namespace,
  });

  let environment = current.environment;
  if (!environment) {
    const created = await callUnary(clients.environments, 'createEnvironment', {
      project: desired.project,
      name: desired.name,
      runtime: desired.runtime,
      settings,
    }).catch((e) => pointInFile(e, desired, []));
    environment = created.environment!;
  }
  const environmentId = environment.id;
  for (const change of plan.changes) if (change.op === 'create-environment') applied.push(change);
  const settingsChange = plan.changes.find((c) => c.op === 'update-settings');
  if (settingsChange) {
    environment = (
      await callUnary(clients.environments, 'updateEnvironment', { environmentId, settings }).catch((e) =>
        pointInFile(e, desired, []),
      )
    ).environment!;
    applied.push(settingsChange);
  }

  let pipeline = (await callUnary(clients.pipelines, 'getPipeline', { environmentId })).pipeline!;
  const stageId = (name: string) => pipeline.stages.find((s) => s.name === name)?.id ?? '';

  // Stages first: services may go into new ones.
  for (const change of plan.changes) {
    if (change.op === 'create-stage') {
      pipeline = (
        await callUnary(
          clients.pipelines,
          'createStage',
          control.CreateStageRequest.fromPartial({
            environmentId,
            name: change.stage,
            description: change.description,
          }),
        )
      ).pipeline!;
      applied.push(change);
    } else if (change.op === 'describe-stage') {
      pipeline = (
        await callUnary(
          clients.pipelines,
          'updateStage',
          control.UpdateStageRequest.fromPartial({
            environmentId,
            stageId: stageId(change.stage),
            description: change.to,
          }),
        )
      ).pipeline!;
      applied.push(change);
    }
  }

  const byName = new Map(current.services.map((s) => [s.name, s]));
  const wanted = new Map(desired.services.map((s) => [s.name, s]));
  const touched = new Set<string>();
  for (const change of plan.changes) {
    switch (change.op) {
      case 'replace-service':
      case 'add-service': {
        const want = wanted.get(change.service)!;
        if (change.op === 'replace-service') {
          await callUnary(clients.environments, 'removeService', {
            environmentId,
            serviceId: byName.get(change.service)!.id,
          }).catch((e) => {
            if (isServiceError(e) && e.code === grpc.status.FAILED_PRECONDITION) {
              throw new EnvironmentFileError(
                [
                  desired.source.problem(
                    [...want.path, 'kind'],
                    `${change.service} runs as a ${change.from} service; a new kind makes it a new service, and the running one must go first: stageline delete ${desired.project}/${desired.name} --service ${change.service} --watch, then apply again`,
                  ),
                ],
                'apply',
              );
            }
            throw e;
          });
        }
        await callUnary(clients.environments, 'addService', {
          environmentId,
          service: definitionFor(want, '', want.stage === undefined ? '' : stageId(want.stage), want.skipped),
        }).catch((e) => pointInFile(e, desired, want.path));
        touched.add(change.service);
        applied.push(change);
        break;
      }
      case 'update-service': {
        const want = wanted.get(change.service)!;
        const have = byName.get(change.service)!;
        await callUnary(clients.environments, 'updateService', {
          environmentId,
          service: definitionFor(want, have.id, '', have.skipped),
        }).catch((e) => pointInFile(e, desired, want.path));
        touched.add(change.service);
        applied.push(change);
        break;
      }
      case 'move-service':
        pipeline = (
          await callUnary(clients.pipelines, 'moveService', {
            environmentId,
            serviceId: byName.get(change.service)!.id,
            stageId: stageId(change.to),
          })
        ).pipeline!;
        applied.push(change);
        break;
      case 'skip-service':
      case 'unskip-service': {
        await callUnary(clients.pipelines, 'setServiceSkipped', {
          environmentId,
          serviceId: byName.get(change.service)!.id,
          skipped: change.op === 'skip-service',
        });
        applied.push(change);
        break;
      }
      case 'remove-service':
        await callUnary(clients.environments, 'removeService', {
          environmentId,
          serviceId: byName.get(change.service)!.id,
        });
        applied.push(change);
        break;
      default:
        break;
    }
  }

  // Secret values cannot be read back, so the plan cannot compare them: send them, and the server
  // (which keeps an unchanged definition untouched, updated_at included) tells whether they changed.
  for (const want of desired.services) {
    const have = byName.get(want.name);
    if (!have || touched.has(want.name) || !want.sendsSecretValues || have.kind !== want.kind) continue;
    const { service } = await callUnary(clients.environments, 'updateService', {
      environmentId,
      service: definitionFor(want, have.id, '', have.skipped),
    }).catch((e) => pointInFile(e, desired, want.path));
    if (service?.updatedAt?.getTime() !== have.updatedAt?.getTime()) {
      applied.push({ op: 'update-service', service: want.name, fields: [{ field: 'envVars (secret values)' }] });
    }
  }

  // Stage deletions and order last: by now no listed service sits in a stage that goes away.
  for (const change of plan.changes) {
    if (change.op === 'delete-stage') {
      pipeline = (
        await callUnary(clients.pipelines, 'deleteStage', {
          environmentId,
          stageId: stageId(change.stage),
          moveServicesToStageId: '',
        })
      ).pipeline!;
      applied.push(change);
    } else if (change.op === 'move-stage') {
      pipeline = (
        await callUnary(clients.pipelines, 'moveStage', {
          environmentId,
          stageId: stageId(change.stage),
          position: change.to,
        })
      ).pipeline!;
      applied.push(change);
    }
  }
  return { environment, plan, applied };
}
