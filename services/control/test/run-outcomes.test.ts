// Control's end-of-run bookkeeping takes "has resources" from the planner's run event (one rule): a
// lifecycle job that ran for the environment's DELETE ends DEPLOYED, yet leaves nothing behind.
import { randomUUID } from 'node:crypto';
import { Bus } from '@stageline/bus';
import { callUnary } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { bus as busv1, control } from '@stageline/proto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { environmentEvents, useControl } from './harness.ts';

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
          envVars: [{ key: 'API_TOKEN', value: `token-${i}`, secret: true }],
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

const E = control.EnvironmentStatus;
const D = control.DeploymentStatus;

const row = async (environmentId: string) =>
  (await db.query('select status from control.environment where id = $1', [environmentId])).rows[0]?.status as number;

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("a run's events, as control records them", () => {
  it('sets the status once per change with one event each, records the end, and a DELETE drops the secrets', async () => {
    const { environmentId, services } = await environmentWith('lifecycle', 2);
    const [api, web] = services as [control.Service, control.Service];
    const bus = await Bus.connect({
      url: ctl.env.natsUrl,
      prefix: ctl.env.busPrefix,
      name: 'run-outcomes-test',
      log: createLogger({ service: 'run-outcomes-test', level: 'silent' }),
    });
    const publish = (runId: string, sequence: number, status: control.EnvironmentStatus, run: object, more = {}) =>
      bus.publish(
        bus.subjects.runEvents(environmentId, runId),
        busv1.DeploymentEvent.encode(
          busv1.DeploymentEvent.fromPartial({
            environmentStatus: status,
            sequence,
            deployment: { id: runId, environmentId, action: control.Action.ACTION_DEPLOY, ...run },
            ...more,
          }),
        ).finish(),
      );
    const statusIs = (status: control.EnvironmentStatus) =>
      until(`status ${status}`, async () => (await row(environmentId)) === status);
    try {
      // A run: queued, building (twice: the second changes nothing), deploying, then its end.
      const first = randomUUID();
      await publish(first, 1, E.ENVIRONMENT_STATUS_QUEUED, { status: D.DEPLOYMENT_STATUS_QUEUED });
      await statusIs(E.ENVIRONMENT_STATUS_QUEUED);
      await publish(first, 2, E.ENVIRONMENT_STATUS_BUILDING, { status: D.DEPLOYMENT_STATUS_RUNNING });
      await statusIs(E.ENVIRONMENT_STATUS_BUILDING);
      await publish(
        first,
        3,
        E.ENVIRONMENT_STATUS_BUILDING,
        { status: D.DEPLOYMENT_STATUS_RUNNING },
        { partial: true },
      );
      await publish(
        first,
        4,
        E.ENVIRONMENT_STATUS_DEPLOYING,
        { status: D.DEPLOYMENT_STATUS_RUNNING },
        { partial: true },
      );
      await statusIs(E.ENVIRONMENT_STATUS_DEPLOYING);
      const endpoints = [{ port: 8080, url: 'http://127.0.0.1:18080' }];
      await publish(first, 5, E.ENVIRONMENT_STATUS_DEPLOYED, {
        status: D.DEPLOYMENT_STATUS_SUCCEEDED,
        services: [
          { serviceId: api.id, status: control.ServiceState.SERVICE_STATE_DEPLOYED, endpoints },
          { serviceId: web.id, status: control.ServiceState.SERVICE_STATE_DEPLOYED },
        ],
      });
      await statusIs(E.ENVIRONMENT_STATUS_DEPLOYED);
      const services = await db.query(
        'select id, has_resources, endpoints from control.service where environment_id = $1 order by name',
        [environmentId],
      );
      expect(services.rows).toEqual([
        { id: api.id, has_resources: true, endpoints },
        { id: web.id, has_resources: true, endpoints: [] },
      ]);

      // The environment changes (its row's updated_at with it): the next run's event carries it as it is now.
      await callUnary(
        ctl.environments,
        'updateEnvironment',
        control.UpdateEnvironmentRequest.fromPartial({ environmentId, settings: { maxParallelBuilds: 3 } }),
      );
      const second = randomUUID();
      await publish(second, 1, E.ENVIRONMENT_STATUS_DELETING, {
        status: D.DEPLOYMENT_STATUS_RUNNING,
        action: control.Action.ACTION_DELETE,
      });
      await statusIs(E.ENVIRONMENT_STATUS_DELETING);
      await publish(
        second,
        2,
        E.ENVIRONMENT_STATUS_DELETED,
        {
          status: D.DEPLOYMENT_STATUS_SUCCEEDED,
          action: control.Action.ACTION_DELETE,
          services: [
            { serviceId: api.id, status: control.ServiceState.SERVICE_STATE_DELETED },
            { serviceId: web.id, status: control.ServiceState.SERVICE_STATE_DELETED },
          ],
        },
        { hasResources: { [api.id]: false, [web.id]: false } },
      );
      await statusIs(E.ENVIRONMENT_STATUS_DELETED);
      const deleted = await db.query(
        'select has_resources, endpoints, secrets from control.service where environment_id = $1',
        [environmentId],
      );
      expect(deleted.rows).toEqual([
        { has_resources: false, endpoints: [], secrets: {} },
        { has_resources: false, endpoints: [], secrets: {} },
      ]);

      // One event per change, each naming its run: none for the repeated BUILDING.
      const events = (await environmentEvents(ctl.env.natsUrl, ctl.env.busPrefix, environmentId, 9)).filter((e) =>
        e.actor.startsWith('run:'),
      );
      expect(
        events.map((e) => [
          e.actor,
          e.event?.$case,
          e.event?.$case === 'environmentUpdated' ? e.event.value.environment?.status : undefined,
        ]),
      ).toEqual([
        [`run:${first}`, 'environmentUpdated', E.ENVIRONMENT_STATUS_QUEUED],
        [`run:${first}`, 'environmentUpdated', E.ENVIRONMENT_STATUS_BUILDING],
        [`run:${first}`, 'environmentUpdated', E.ENVIRONMENT_STATUS_DEPLOYING],
        [`run:${first}`, 'environmentUpdated', E.ENVIRONMENT_STATUS_DEPLOYED],
        [`run:${second}`, 'environmentUpdated', E.ENVIRONMENT_STATUS_DELETING],
        [`run:${second}`, 'environmentRemoved', undefined],
      ]);
      const deleting = events[4]!.event;
      expect(deleting?.$case === 'environmentUpdated' && deleting.value.environment?.settings?.maxParallelBuilds).toBe(
        3,
      );
    } finally {
      await bus.close();
    }
  });
});
