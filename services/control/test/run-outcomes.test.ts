// Control's end-of-run bookkeeping takes "has resources" from the planner's run event (one rule): a
// lifecycle job that ran for the environment's DELETE ends DEPLOYED, yet leaves nothing behind.
import { randomUUID } from 'node:crypto';
import { Bus } from '@stageline/bus';
import { callUnary } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { bus as busv1, control } from '@stageline/proto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useControl } from './harness.ts';

const ctl = useControl();
let db: pg.Client;

beforeAll(async () => {
  db = new pg.Client({ connectionString: ctl.env.databaseUrl });
  await db.connect();
});
afterAll(() => db.end());

const hasResources = async (serviceId: string): Promise<boolean | undefined> =>
  (await db.query('select has_resources from control.service where id = $1', [serviceId])).rows[0]?.has_resources;

async function environmentWith(name: string, count: number) {
  const { environment } = await callUnary(
    ctl.environments,
    'createEnvironment',
    control.CreateEnvironmentRequest.fromPartial({ project: 'outcomes', name }),
  );
  const services: control.Service[] = [];
  for (let i = 0; i < count; i++) {
    const { service } = await callUnary(
      ctl.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: environment!.id,
        service: {
          name: `svc-${i}`,
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          source: { $case: 'container', value: { image: 'docker.io/library/nginx', tag: '1.27' } },
        },
      }),
    );
    services.push(service!);
  }
  return { environmentId: environment!.id, services };
}

async function publishRunEnd(environmentId: string, event: busv1.DeploymentEvent): Promise<void> {
  const bus = await Bus.connect({
    url: ctl.env.natsUrl,
    prefix: ctl.env.busPrefix,
    name: 'run-outcomes-test',
    log: createLogger({ service: 'run-outcomes-test', level: 'silent' }),
  });
  try {
    await bus.publish(
      bus.subjects.runEvents(environmentId, event.deployment!.id),
      busv1.DeploymentEvent.encode(event).finish(),
    );
  } finally {
    await bus.close();
  }
}

describe("a run's end, as control records it", () => {
  it("takes each service's resources from the planner's rule, and its state where the event has none", async () => {
    const { environmentId, services } = await environmentWith('rule', 2);
    const [job, web] = services as [control.Service, control.Service];
    await publishRunEnd(
      environmentId,
      busv1.DeploymentEvent.fromPartial({
        environmentStatus: control.EnvironmentStatus.ENVIRONMENT_STATUS_DEPLOYED,
        sequence: 9,
        // The planner: the first service's job ran for a DELETE (no resources left); the second has none to say.
        hasResources: { [job.id]: false },
        deployment: {
          id: randomUUID(),
          environmentId,
          action: control.Action.ACTION_DEPLOY,
          status: control.DeploymentStatus.DEPLOYMENT_STATUS_SUCCEEDED,
          services: [
            { serviceId: job.id, status: control.ServiceState.SERVICE_STATE_DEPLOYED },
            { serviceId: web.id, status: control.ServiceState.SERVICE_STATE_DEPLOYED },
          ],
        },
      }),
    );
    for (let i = 0; i < 200 && (await hasResources(web.id)) !== true; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await hasResources(web.id)).toBe(true);
    expect(await hasResources(job.id)).toBe(false);
  });
});
