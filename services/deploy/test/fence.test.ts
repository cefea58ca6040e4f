// One live copy: a copy of a deploy job whose lease a newer delivery took (its worker was paused past
// the ack wait) records no outcome — the fence before recording throws, and the store keeps nothing.
import { LeaseLost } from '@stageline/bus';
import { type Database, newId, openDatabase } from '@stageline/db';
import { bus, control } from '@stageline/proto';
import { useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entities } from '../src/adapters/db/entities.ts';
import { migrations } from '../src/adapters/db/migrations.ts';
import { PgCredentialStore, PgReleaseStore } from '../src/adapters/db/release-store.ts';
import { FsChartStore } from '../src/adapters/fs/chart-store.ts';
import { type DeployJobDeps, handleDeployJob } from '../src/app/deploy-job.ts';
import { keyedSerializer } from '../src/app/keyed-serializer.ts';
import { log, recordingContext, secrets } from './support.ts';

const isolated = useIsolatedEnvironment();
let db: Database;
let deps: DeployJobDeps;

beforeAll(async () => {
  db = await openDatabase({ url: isolated.databaseUrl, schema: 'deploy', entities, migrations, log });
  const releases = new PgReleaseStore({ db, secrets });
  deps = {
    releases,
    charts: new FsChartStore('/nonexistent-charts', secrets),
    credentials: new PgCredentialStore({ db, secrets }),
    runtime: () => undefined,
    serialize: keyedSerializer(),
    fingerprint: (value) => secrets.fingerprint(value),
    now: () => new Date(),
  };
});
afterAll(async () => {
  await db?.close();
});

function stopJob(): bus.DeployJob {
  return bus.DeployJob.fromPartial({
    jobId: newId(),
    deploymentId: newId(),
    environmentId: newId(),
    action: control.Action.ACTION_STOP,
    service: { id: newId(), name: 'web', kind: control.ServiceKind.SERVICE_KIND_CONTAINER },
  });
}

describe('the fence before a deploy job records its outcome', () => {
  it('records the outcome of the live copy', async () => {
    const job = stopJob();
    const ctx = {
      ...recordingContext({ jobId: job.jobId, deploymentId: job.deploymentId, serviceId: 'svc' }),
      fence: async () => {},
    };
    const result = await handleDeployJob(deps, job, ctx);
    expect(result.succeeded).toBe(true);
    expect(await deps.releases.findResult(job.jobId)).toEqual(result);
  });

  it('records nothing for a stale copy', async () => {
    const job = stopJob();
    const ctx = {
      ...recordingContext({ jobId: job.jobId, deploymentId: job.deploymentId, serviceId: 'svc' }),
      fence: async () => {
        throw new LeaseLost();
      },
    };
    await expect(handleDeployJob(deps, job, ctx)).rejects.toBeInstanceOf(LeaseLost);
    expect(await deps.releases.findResult(job.jobId)).toBeUndefined();
  });
});
