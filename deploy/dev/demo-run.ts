// The main job's second half: deploy the example environment, follow the run live, print each stage's
// and service's status with step durations, and show the public service answering HTTP.
//
//   node deploy/dev/demo-run.ts <project> <environment> [--address 127.0.0.1:50051]
import * as grpc from '@grpc/grpc-js';
import { callUnary } from '@stageline/grpc';
import { control } from '@stageline/proto';

const args = process.argv.slice(2);
const addressFlag = args.indexOf('--address');
const address = addressFlag >= 0 ? args[addressFlag + 1]! : (process.env.STAGELINE_ADDRESS ?? '127.0.0.1:50051');
const [project = 'demo', name = 'staging'] = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--address');

const creds = grpc.credentials.createInsecure();
const environments = new control.EnvironmentServiceClient(address, creds);
const deployments = new control.DeploymentServiceClient(address, creds);
const label = (json: string, prefix: string) => json.replace(prefix, '');
const seconds = (s: control.Step) =>
  s.startedAt && s.finishedAt ? `${((s.finishedAt.getTime() - s.startedAt.getTime()) / 1000).toFixed(1)}s` : '…';

async function main(): Promise<number> {
  const { environments: found } = await callUnary(environments, 'listEnvironments', {
    project,
    pageSize: 500,
    pageToken: '',
  });
  const env = found.find((e) => e.name === name);
  if (!env) throw new Error(`no environment ${project}/${name}: apply it first`);

  const { deployment } = await callUnary(deployments, 'deployEnvironment', {
    environmentId: env.id,
    requester: 'demo',
    forceBuild: false,
  });
  console.log(`deploying ${project}/${name}: run ${deployment!.id}`);
  const started = Date.now();
  const seen = new Map<string, string>();
  let final: control.Deployment | undefined;
  await new Promise<void>((resolve, reject) => {
    const call = deployments.watchDeployment({ deploymentId: deployment!.id }, { deadline: Date.now() + 600_000 });
    call.on('data', (m: control.WatchDeploymentResponse) => {
      const d = m.deployment!;
      final = d;
      for (const s of d.services) {
        const state = label(control.serviceStateToJSON(s.status), 'SERVICE_STATE_');
        if (seen.get(s.name) !== state) {
          seen.set(s.name, state);
          console.log(`  +${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s  ${s.name.padEnd(10)} ${state}`);
        }
      }
    });
    call.on('end', resolve);
    call.on('error', reject);
  });
  const run = final!;
  const status = label(control.deploymentStatusToJSON(run.status), 'DEPLOYMENT_STATUS_');
  console.log(
    `\nrun ${status} in ${((Date.now() - started) / 1000).toFixed(1)}s${run.message ? `: ${run.message}` : ''}`,
  );
  for (const stage of run.stages) {
    console.log(
      `\n  stage ${stage.order}  ${stage.name.padEnd(22)} ${label(control.stageStatusToJSON(stage.status), 'STAGE_STATUS_')}`,
    );
    for (const s of run.services.filter((x) => x.stageId === stage.stageId)) {
      const steps = s.steps
        .map(
          (st) =>
            `${label(control.stepKindToJSON(st.kind), 'STEP_KIND_')} ${seconds(st)}` +
            (st.outcome === control.StepOutcome.STEP_OUTCOME_CACHE_HIT ? ' (cache hit)' : ''),
        )
        .join(', ');
      console.log(
        `      ${s.name.padEnd(10)} ${label(control.serviceStateToJSON(s.status), 'SERVICE_STATE_').padEnd(18)} ${steps}`,
      );
    }
  }
  const endpoint = run.services
    .flatMap((s) => s.endpoints.map((e) => ({ service: s.name, url: e.url })))
    .find((e) => e.url.startsWith('http'));
  if (endpoint) {
    const response = await fetch(endpoint.url);
    console.log(
      `\n${endpoint.service} answers on ${endpoint.url} (HTTP ${response.status}):\n  ${(await response.text()).trim()}\n`,
    );
  }
  return run.status === control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED && endpoint ? 0 : 1;
}

try {
  process.exitCode = await main();
} catch (e) {
  const err = e as grpc.ServiceError;
  console.error(`demo failed: ${err.code !== undefined ? `${grpc.status[err.code]}: ${err.details}` : String(e)}`);
  process.exitCode = 1;
} finally {
  environments.close();
  deployments.close();
}
