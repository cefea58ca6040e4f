// The next run starts in the commit that frees the lane (issue 24): a request admitted while nothing
// runs is RUNNING in its first event, with the one snapshot its validation fetched; a run that ends
// starts the next queued one in the same commit, from the snapshot its request brought (no kick, no
// second snapshot call). The planner's app over the real database; jobs answered by hand.
import { randomUUID } from 'node:crypto';
import { createSubjects } from '@stageline/bus';
import { type Database, OutboxMessage, openDatabase } from '@stageline/db';
import { createLogger } from '@stageline/log';
import { bus, control, snapshot as snapshotv1 } from '@stageline/proto';
import { useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entities } from '../src/adapters/db/entities.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { STATE } from '../src/adapters/db/run-sql.ts';
import { PlannerApp } from '../src/app/planner-app.ts';
import type { RunState } from '../src/domain/model.ts';

const isolated = useIsolatedEnvironment();
let db: Database;
const subjects = createSubjects('qstart');

beforeAll(async () => {
  db = await openDatabase({
    url: isolated.databaseUrl,
    schema: 'planner',
    entities: [...entities, OutboxMessage],
    migrations,
    log: createLogger({ service: 'planner-test', level: 'silent' }),
  });
});
afterAll(() => db?.close());

function environment(initial: string) {
  let message = initial;
  const environmentId = randomUUID();
  const stageId = randomUUID();
  const serviceId = randomUUID();
  const snapshot = () =>
    snapshotv1.GetEnvironmentSnapshotResponse.fromPartial({
      environment: control.Environment.fromPartial({ id: environmentId, name: 'qs', project: 'p', runtime: 'local' }),
      pipeline: control.Pipeline.fromPartial({ stages: [{ id: stageId, name: 'only' }] }),
      services: [
        control.Service.fromPartial({
          id: serviceId,
          name: 'web',
          stageId,
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          source: { $case: 'container', value: { image: 'example', tag: 'v1', ports: [] } },
          envVars: [{ key: 'MESSAGE', value: message, secret: false }],
        }),
      ],
    });
  return { environmentId, serviceId, snapshot, edit: (m: string) => (message = m) };
}

function plannerWith(snapshot: () => ReturnType<ReturnType<typeof environment>['snapshot']>) {
  const calls = { snapshot: 0 };
  const app = new PlannerApp({
    db,
    subjects,
    snapshot: async () => {
      calls.snapshot++;
      return snapshot();
    },
    publishCancel: () => undefined,
    onCommit: () => undefined,
    log: createLogger({ service: 'planner-test', level: 'silent' }),
  });
  return { app, calls };
}

const request = (environmentId: string, requester: string) =>
  bus.ActionRequested.fromPartial({
    requestId: randomUUID(),
    environmentId,
    action: control.Action.ACTION_DEPLOY,
    requester,
  });

/** The environment's runs as stored, each state assembled from its header and its service runs. */
async function rows(environmentId: string) {
  const found = await db
    .em()
    .execute<{ id: string; status: string; state: string | null; snapshot: unknown }[]>(
      `select d.id, d.status, ${STATE} as state, d.snapshot from deployment d where d.environment_id = ? order by d.created_at, d.id`,
      [environmentId],
    );
  return found.map((r) => ({ ...r, state: r.state === null ? null : (JSON.parse(r.state) as RunState) }));
}

/** The run events of one run in the outbox, in order. */
async function events(environmentId: string, deploymentId: string) {
  const found = await db
    .em()
    .execute<{ payload: Uint8Array }[]>(`select payload from outbox_message where subject = ? order by seq`, [
      subjects.runEvents(environmentId, deploymentId),
    ]);
  return found.map((r) => bus.DeploymentEvent.decode(new Uint8Array(r.payload)));
}

/** The job each service of the run has out, as a successful JobFinished. */
async function answers(environmentId: string, deploymentId: string): Promise<bus.JobEvent[]> {
  const row = (await rows(environmentId)).find((r) => r.id === deploymentId);
  return (row?.state?.services ?? []).flatMap((s) =>
    [s.build, s.deploy]
      .filter((j) => j?.phase === 'DISPATCHED')
      .map((j) =>
        bus.JobEvent.fromPartial({
          jobId: j!.jobId,
          deploymentId,
          serviceId: s.serviceId,
          sequence: 1,
          event: {
            $case: 'jobFinished',
            value: bus.JobFinished.fromPartial({
              succeeded: true,
              state:
                j!.role === 'build'
                  ? control.ServiceState.SERVICE_STATE_QUEUED
                  : control.ServiceState.SERVICE_STATE_DEPLOYED,
              image: 'mirror/example@sha256:1',
            }),
          },
        }),
      ),
  );
}

/** Answers every job the run has waiting, successfully, until none waits. */
async function finishJobs(app: PlannerApp, environmentId: string, deploymentId: string): Promise<void> {
  for (let round = 0; round < 10; round++) {
    const waiting = await answers(environmentId, deploymentId);
    if (waiting.length === 0) return;
    await app.onJobEvents(waiting);
  }
}

describe('starting runs in the commit that frees the lane', () => {
  it('a request admitted while nothing runs is RUNNING in its first event, with one snapshot call', async () => {
    const env = environment('one');
    const { app, calls } = plannerWith(env.snapshot);
    const first = await app.submit(request(env.environmentId, 'ana'));
    expect(control.deploymentStatusToJSON(first.status)).toBe('DEPLOYMENT_STATUS_RUNNING');
    expect(calls.snapshot).toBe(1);
    const sent = await events(env.environmentId, first.id);
    expect(sent.map((e) => control.deploymentStatusToJSON(e.deployment!.status))[0]).toBe('DEPLOYMENT_STATUS_RUNNING');
    expect(sent[0]!.sequence).toBe(1);
    // Its first job went out in the same commit.
    const [run] = await rows(env.environmentId);
    expect(run!.state!.services[0]!.build?.phase).toBe('DISPATCHED');
    // Kept as rows: the run's header without its services, and one row per service run.
    const stored = await db.em().execute<{ services: number; rows: number }[]>(
      `select jsonb_array_length(d.state->'services') as services,
           (select count(*)::int from service_run r where r.deployment_id = d.id) as rows
         from deployment d where d.id = ?`,
      [first.id],
    );
    expect(stored[0]).toEqual({ services: 0, rows: 1 });
  });

  it('the next queued run is RUNNING as the run ahead ends, on the environment its request saw', async () => {
    const env = environment('before');
    const { app, calls } = plannerWith(env.snapshot);
    const first = await app.submit(request(env.environmentId, 'ana'));
    const second = await app.submit(request(env.environmentId, 'bo'));
    expect(control.deploymentStatusToJSON(second.status)).toBe('DEPLOYMENT_STATUS_QUEUED');
    expect(second.waitsFor).toBe(first.id);
    // A later request that joins the queued run brings the environment as it is then.
    env.edit('after');
    const merged = await app.submit(request(env.environmentId, 'bo'));
    expect(merged.id).toBe(second.id);
    expect(merged.merged).toBe(true);
    expect(calls.snapshot).toBe(3);
    // The environment changes again while the run waits: the run deploys it as its latest request saw it.
    env.edit('later');

    await finishJobs(app, env.environmentId, first.id);
    const [ended, next] = await rows(env.environmentId);
    expect(ended!.status).toBe('SUCCEEDED');
    // No kick, no snapshot call: started in the commit that ended the first.
    expect(next!.status).toBe('RUNNING');
    expect(calls.snapshot).toBe(3);
    const services = (next!.snapshot as { services: { envVars: { value: string }[] }[] }).services;
    expect(services[0]!.envVars[0]!.value).toBe('after');
    const sent = await events(env.environmentId, second.id);
    expect(sent.map((e) => control.deploymentStatusToJSON(e.deployment!.status)).at(-1)).toBe(
      'DEPLOYMENT_STATUS_RUNNING',
    );
    expect(sent.map((e) => e.sequence)).toEqual(sent.map((_, i) => i + 1));
  });

  it('a queued run an older version wrote (no snapshot kept) is started by kick, on the environment as it is then', async () => {
    const env = environment('old');
    const { app, calls } = plannerWith(env.snapshot);
    const first = await app.submit(request(env.environmentId, 'ana'));
    const second = await app.submit(request(env.environmentId, 'bo'));
    await db.em().execute('update deployment set snapshot = null where id = ?', [second.id]);
    env.edit('now');
    await finishJobs(app, env.environmentId, first.id);
    const [, next] = await rows(env.environmentId);
    expect(next!.status).toBe('RUNNING');
    expect(calls.snapshot).toBe(3);
    const services = (next!.snapshot as { services: { envVars: { value: string }[] }[] }).services;
    expect(services[0]!.envVars[0]!.value).toBe('now');
  });
});

describe('job reports of several runs in one batch', () => {
  it('advances every run it names, each as its own batch would, and ends the ones it finishes', async () => {
    const envs = [environment('a'), environment('b'), environment('c')];
    const { app } = plannerWith(() => envs[0]!.snapshot());
    const runs = [];
    for (const env of envs) {
      const { app: own } = plannerWith(env.snapshot);
      runs.push({ env, run: await own.submit(request(env.environmentId, 'ana')) });
    }
    // Round 1: every run's mirror job answered, interleaved with an event of a run that does not exist.
    const round1 = (await Promise.all(runs.map(({ env, run }) => answers(env.environmentId, run.id)))).flat();
    const stray = bus.JobEvent.fromPartial({ jobId: 'x', deploymentId: randomUUID(), sequence: 1 });
    await app.onJobEvents([round1[0]!, stray, ...round1.slice(1)]);
    for (const { env, run } of runs) {
      const [row] = await rows(env.environmentId);
      expect(row!.status).toBe('RUNNING');
      expect(row!.state!.services[0]!.build?.phase).toBe('DONE');
      expect(row!.state!.services[0]!.deploy?.phase).toBe('DISPATCHED');
      // Its deploy job and its event went to the outbox with the batch.
      expect((await events(env.environmentId, run.id)).map((e) => e.sequence)).toEqual([1, 2]);
    }
    // Round 2: the deploy jobs of two runs answered together: those two end, the third goes on.
    const round2 = (
      await Promise.all(runs.slice(0, 2).map(({ env, run }) => answers(env.environmentId, run.id)))
    ).flat();
    await app.onJobEvents(round2);
    const statuses = await Promise.all(runs.map(async ({ env }) => (await rows(env.environmentId))[0]!.status));
    expect(statuses).toEqual(['SUCCEEDED', 'SUCCEEDED', 'RUNNING']);
    // The same events again change nothing (a redelivered batch).
    await app.onJobEvents(round2);
    for (const { env, run } of runs.slice(0, 2)) {
      expect((await events(env.environmentId, run.id)).map((e) => e.sequence)).toEqual([1, 2, 3]);
    }
  });
});
