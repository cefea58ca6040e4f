// Applies an example environment through the public gRPC API (create or bring up to date, so
// running it twice changes nothing), then prints its pipeline.
//
//   node deploy/dev/apply-example.ts [deploy/examples/demo-staging.json] [--address 127.0.0.1:50051]
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';

interface ExampleFile {
  project: string;
  name: string;
  runtime?: string;
  settings?: unknown;
  stages: { name: string; description?: string }[];
  services: { stage: string; skipped?: boolean; service: unknown }[];
}

const args = process.argv.slice(2);
const addressFlag = args.indexOf('--address');
const address = addressFlag >= 0 ? args[addressFlag + 1]! : (process.env.STAGELINE_ADDRESS ?? '127.0.0.1:50051');
const file =
  args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--address') ?? 'deploy/examples/demo-staging.json';
const spec = JSON.parse(readFileSync(file, 'utf8')) as ExampleFile;

const creds = grpc.credentials.createInsecure();
const environments = new control.EnvironmentServiceClient(address, creds);
const pipelines = new control.PipelineServiceClient(address, creds);
const changes: string[] = [];

async function findEnvironment(): Promise<control.Environment | undefined> {
  let pageToken = '';
  do {
    const page = await callUnary(environments, 'listEnvironments', { project: spec.project, pageSize: 500, pageToken });
    const found = page.environments.find((e) => e.name === spec.name);
    if (found) return found;
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return undefined;
}

async function apply(): Promise<string> {
  const settings = control.EnvironmentSettings.fromJSON(spec.settings ?? {});
  let env = await findEnvironment();
  if (!env) {
    const created = await callUnary(environments, 'createEnvironment', {
      project: spec.project,
      name: spec.name,
      runtime: spec.runtime ?? 'local',
      settings,
    });
    env = created.environment!;
    changes.push(`created environment ${spec.project}/${spec.name}`);
  } else {
    const updated = await callUnary(environments, 'updateEnvironment', { environmentId: env.id, settings });
    if (updated.environment!.updatedAt?.getTime() !== env.updatedAt?.getTime()) changes.push('updated settings');
  }
  const environmentId = env.id;

  let { pipeline } = await callUnary(pipelines, 'getPipeline', { environmentId });
  for (const stage of spec.stages) {
    if (!pipeline!.stages.some((s) => s.name === stage.name)) {
      ({ pipeline } = await callUnary(
        pipelines,
        'createStage',
        control.CreateStageRequest.fromPartial({
          environmentId,
          name: stage.name,
          description: stage.description ?? '',
        }),
      ));
      changes.push(`created stage ${JSON.stringify(stage.name)}`);
    }
  }
  const stageId = (name: string) => {
    const stage = pipeline!.stages.find((s) => s.name === name);
    if (!stage) throw new Error(`${file}: service stage ${JSON.stringify(name)} is not a stage of the environment`);
    return stage.id;
  };

  const { services } = await callUnary(environments, 'listServices', { environmentId });
  for (const entry of spec.services) {
    const wanted = control.Service.fromJSON(entry.service);
    const target = stageId(entry.stage);
    let current = services.find((s) => s.name === wanted.name);
    if (current && current.kind !== wanted.kind) {
      // A service cannot change kind: replace it.
      await callUnary(environments, 'removeService', { environmentId, serviceId: current.id });
      changes.push(`removed service ${wanted.name} (its kind changed)`);
      current = undefined;
    }
    if (!current) {
      const added = await callUnary(environments, 'addService', {
        environmentId,
        service: { ...wanted, stageId: target, skipped: entry.skipped ?? false },
      });
      changes.push(`added service ${wanted.name}`);
      current = added.service!;
      continue;
    }
    const updated = await callUnary(environments, 'updateService', {
      environmentId,
      service: { ...wanted, id: current.id, stageId: '' },
    });
    if (updated.service!.updatedAt?.getTime() !== current.updatedAt?.getTime())
      changes.push(`updated service ${wanted.name}`);
    if (current.stageId !== target) {
      await callUnary(pipelines, 'moveService', { environmentId, serviceId: current.id, stageId: target });
      changes.push(`moved service ${wanted.name} to ${entry.stage}`);
    }
    if (current.skipped !== (entry.skipped ?? false)) {
      await callUnary(pipelines, 'setServiceSkipped', {
        environmentId,
        serviceId: current.id,
        skipped: entry.skipped ?? false,
      });
      changes.push(`${entry.skipped ? 'skipped' : 'unskipped'} service ${wanted.name}`);
    }
  }
  // The file is the whole truth about services: those it no longer lists are removed.
  for (const stale of services.filter(
    (s) => !spec.services.some((e) => (e.service as { name?: string }).name === s.name),
  )) {
    await callUnary(environments, 'removeService', { environmentId, serviceId: stale.id });
    changes.push(`removed service ${stale.name}`);
  }
  return environmentId;
}

function kindLabel(kind: control.ServiceKind): string {
  return control.serviceKindToJSON(kind).replace('SERVICE_KIND_', '');
}

async function printPipeline(environmentId: string): Promise<void> {
  const [{ environment, pipeline }, { services }] = await Promise.all([
    callUnary(environments, 'getEnvironment', { environmentId }),
    callUnary(environments, 'listServices', { environmentId }),
  ]);
  const byId = new Map(services.map((s) => [s.id, s]));
  console.log(
    `\nenvironment ${environment!.project}/${environment!.name}  (${environment!.id}, runtime ${environment!.runtime})`,
  );
  for (const stage of pipeline!.stages) {
    console.log(`\n  stage ${stage.order}  ${stage.name}${stage.description ? `  — ${stage.description}` : ''}`);
    if (stage.serviceIds.length === 0) console.log('      (empty)');
    for (const id of stage.serviceIds) {
      const s = byId.get(id)!;
      console.log(`      ${s.name.padEnd(18)} ${kindLabel(s.kind).padEnd(14)} ${s.skipped ? 'SKIPPED' : ''}`);
    }
  }
  console.log('');
}

try {
  const environmentId = await apply();
  console.log(
    changes.length === 0
      ? 'example environment already up to date: nothing changed'
      : changes.map((c) => `  ${c}`).join('\n'),
  );
  await printPipeline(environmentId);
} catch (e) {
  const err = e as grpc.ServiceError;
  console.error(`apply failed: ${err.code !== undefined ? `${grpc.status[err.code]}: ${err.details}` : String(e)}`);
  process.exitCode = 1;
} finally {
  environments.close();
  pipelines.close();
}
