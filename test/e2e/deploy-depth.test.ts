// The deploy service in depth, end to end (issue 5): the four services as processes on real NATS,
// PostgreSQL, the mirror registry and podman. A failed update leaves the previous revision serving; a
// ROLLBACK redeploys a past run without building; a lifecycle job's output and a managed database's
// connection reach the services of later stages; a cron job runs once per tick with two deploy processes;
// a custom Helm chart is refused on the local runtime before anything starts.
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { callUnary, isServiceError } from '@stageline/grpc';
import { control } from '@stageline/proto';
import { freePort } from '@stageline/testkit';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, stateName, stepsOf, useStack, watchToEnd } from './stack.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const { ServiceKind, StepKind } = control;

// Filled before the stack starts (hooks run in order): the managed server and the cron clock.
const stackEnv: Record<string, string> = { WORKER_ACK_WAIT_MS: '5000', DEPLOY_CRON_POLL_MS: '200' };
const work = mkdtempSync(join(tmpdir(), 'stageline-depth-'));
// The server runs as the postgres user (as root, the script runs it so): it must reach its directory.
chmodSync(work, 0o755);
const clockFile = join(work, 'cron-clock');
const managedDir = join(work, 'managed-postgres');
let managedPort = 0;

beforeAll(async () => {
  // A server of its own, listening on every interface with pg_hba for the podman networks, as the
  // deploy/dev script sets one up for the demo.
  managedPort = await freePort();
  await run('bash', [join(root, 'deploy/dev/managed-postgres.sh'), 'start', managedDir, String(managedPort)]);
  stackEnv.MANAGED_POSTGRES_URL = `postgres://postgres@127.0.0.1:${managedPort}/postgres`;
  writeFileSync(clockFile, String(Date.now()));
  stackEnv.DEPLOY_CRON_CLOCK_FILE = clockFile;
}, 60_000);

const stack = useStack({ env: stackEnv });

afterAll(async () => {
  await run('bash', [join(root, 'deploy/dev/managed-postgres.sh'), 'stop', managedDir]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}, 60_000);

const [EXAMPLE_REPO = '', EXAMPLE_TAG = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);

async function addService(envId: string, service: Partial<control.Service>): Promise<control.Service> {
  const { service: added } = await callUnary(
    stack.environments,
    'addService',
    control.AddServiceRequest.fromPartial({ environmentId: envId, service }),
  );
  return added!;
}

const deployEnv = async (environmentId: string) =>
  (
    await callUnary(stack.deployments, 'deployEnvironment', {
      versions: {},
      environmentId,
      requester: 'e2e',
      forceBuild: false,
    })
  ).deployment!;
const byName = (d: control.Deployment) => Object.fromEntries(d.services.map((s) => [s.name, s]));

async function get(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  return (await response.text()).trim();
}

/** An image of the example's own, with MESSAGE baked in: two of them are two versions of one service. */
async function pushVersion(tag: string): Promise<string> {
  const target = `127.0.0.1:5001/e2e/depth:${tag}`;
  const { stdout } = await run('buildah', ['from', '--quiet', EXAMPLE_IMAGE]);
  const container = stdout.trim();
  try {
    await run('buildah', ['config', '--env', `MESSAGE=served by image ${tag}`, container]);
    await run('buildah', ['commit', '--quiet', container, target]);
  } finally {
    await run('buildah', ['rm', container]).catch(() => undefined);
  }
  await run('buildah', ['push', '--quiet', target, `docker://${target}`]);
  await run('buildah', ['rmi', target]).catch(() => undefined);
  return target;
}

const httpCheck = control.HealthCheck.fromPartial({
  probe: { $case: 'http', value: { path: '/', port: 8080 } },
  periodSeconds: 1,
});

describe('deploy service in depth', () => {
  it('an update that never becomes ready: DEPLOYMENT_ERROR, the previous revision serves again, history shows both', async () => {
    const env = (await createEnvironment(stack, 'never-ready')).environment!.id;
    const definition = {
      name: 'web',
      kind: ServiceKind.SERVICE_KIND_CONTAINER,
      source: {
        $case: 'container' as const,
        value: { image: EXAMPLE_REPO, tag: EXAMPLE_TAG, ports: [{ port: 8080, public: true }] },
      },
      envVars: [{ key: 'MESSAGE', value: 'revision one', secret: false }],
      readinessTimeoutSeconds: 30,
      healthCheck: httpCheck,
    };
    const web = await addService(env, definition);
    const first = await watchToEnd(stack, (await deployEnv(env)).id);
    expect(runStatusName(first.final.status), first.final.message).toBe('SUCCEEDED');
    const url = byName(first.final).web!.endpoints[0]!.url;
    expect(await get(url)).toBe('revision one');

    await callUnary(stack.environments, 'updateService', {
      environmentId: env,
      service: control.Service.fromPartial({
        ...definition,
        id: web.id,
        envVars: [{ key: 'MESSAGE', value: 'revision two', secret: false }],
        readinessTimeoutSeconds: 3,
        // Nothing listens there: never ready.
        healthCheck: { probe: { $case: 'tcp', value: { port: 9999 } }, periodSeconds: 1 },
      }),
    });
    const second = await watchToEnd(stack, (await deployEnv(env)).id);
    expect(runStatusName(second.final.status)).toBe('FAILED');
    const failed = byName(second.final).web!;
    expect(stateName(failed.status)).toBe('DEPLOYMENT_ERROR');
    expect(failed.message).toMatch(/^not ready after 3s: .*rolled back: revision 1 serves again/);
    expect(await get(url)).toBe('revision one');

    // Through control's public face, with a token: ReleaseService itself is internal.
    {
      const list = await callUnary(stack.deployments, 'listReleases', { environmentId: env, serviceId: web.id });
      expect(list.releases.map((r) => [r.revision, r.status])).toEqual([
        [2, 'FAILED'],
        [1, 'DEPLOYED'],
      ]);
      expect(list.releases[0]!.message).toContain('not ready after 3s');
      expect(list.releases.map((r) => r.deploymentId)).toEqual([second.final.id, first.final.id]);
      for (const r of list.releases) {
        expect(r.configHash).toMatch(/^[0-9a-f]{64}$/);
        expect(r.digest).toMatch(/^sha256:/);
        expect(r.chart).not.toBe('');
        expect(r.createdAt).toBeInstanceOf(Date);
      }
    }
  }, 240_000);

  it('deploy v1, deploy v2, ROLLBACK to the v1 run: v1 serves again and nothing was built or mirrored', async () => {
    await pushVersion('v1');
    await pushVersion('v2');
    const env = (await createEnvironment(stack, 'rollback')).environment!.id;
    const definition = (tag: string) => ({
      name: 'app',
      kind: ServiceKind.SERVICE_KIND_CONTAINER,
      source: {
        $case: 'container' as const,
        value: { image: '127.0.0.1:5001/e2e/depth', tag, ports: [{ port: 8080, public: true }] },
      },
      readinessTimeoutSeconds: 30,
      healthCheck: httpCheck,
    });
    const app = await addService(env, definition('v1'));
    const v1 = await watchToEnd(stack, (await deployEnv(env)).id);
    expect(runStatusName(v1.final.status), v1.final.message).toBe('SUCCEEDED');
    const url = byName(v1.final).app!.endpoints[0]!.url;
    expect(await get(url)).toBe('served by image v1');

    await callUnary(stack.environments, 'updateService', {
      environmentId: env,
      service: control.Service.fromPartial({ ...definition('v2'), id: app.id }),
    });
    const v2 = await watchToEnd(stack, (await deployEnv(env)).id);
    expect(runStatusName(v2.final.status)).toBe('SUCCEEDED');
    expect(await get(url)).toBe('served by image v2');

    const { deployment } = await callUnary(stack.deployments, 'rollbackEnvironment', {
      environmentId: env,
      toDeploymentId: v1.final.id,
      requester: 'e2e',
    });
    const back = await watchToEnd(stack, deployment!.id);
    expect(runStatusName(back.final.status), back.final.message).toBe('SUCCEEDED');
    expect(await get(url)).toBe('served by image v1');
    // No build, no mirror: the image came from the mirror as the v1 run left it.
    expect(stepsOf(back.final, StepKind.STEP_KIND_MIRROR_IMAGE)).toEqual([]);
    expect(stepsOf(back.final, StepKind.STEP_KIND_BUILD)).toEqual([]);
    expect(stepsOf(back.final, StepKind.STEP_KIND_DEPLOYMENT)).toHaveLength(1);
    expect(byName(back.final).app!.version).toBe(byName(v1.final).app!.version);
  }, 240_000);

  it('a lifecycle job and a managed database in earlier stages: their values reach a later service; data kept across STOP, dropped on DELETE', async () => {
    const env = (await createEnvironment(stack, 'values')).environment!.id;
    const db = await addService(env, {
      name: 'db',
      kind: ServiceKind.SERVICE_KIND_DATABASE,
      source: { $case: 'database', value: { engine: 1, version: '15', mode: 2, image: '' } },
    });
    const job = await addService(env, {
      name: 'keys',
      kind: ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
      source: {
        $case: 'job',
        value: control.JobSource.fromPartial({
          from: { $case: 'container', value: { image: EXAMPLE_REPO, tag: EXAMPLE_TAG, ports: [] } },
          onDeploy: true,
          onDelete: true,
          maxDurationSeconds: 60,
          maxRetries: 1,
        }),
      },
      envVars: [
        {
          key: 'EXAMPLE_SCRIPT',
          value:
            // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion for the job, not a template
            'echo "issuing a key for $STAGELINE_JOB_EVENT with database ${DB_DATABASE:-none}"; echo \'{"API_KEY":"key-from-the-job"}\' > /stageline/output/output.json',
          secret: false,
        },
      ],
    });
    // The later service shows what it received, and whether it reaches the database server.
    const script = [
      'mkdir -p /www',
      'printf "%s" "$API_KEY" > /www/key.txt',
      'printf "%s" "$DB_URL" > /www/url.txt',
      // busybox nc has no -z: connect with nothing to send; it exits 0 once connected.
      'if nc -w 3 "$DB_HOST" "$DB_PORT" </dev/null; then echo reachable; else echo unreachable; fi > /www/db.txt',
      'exec /bin/busybox httpd -f -p 8080 -h /www',
    ].join('; ');
    await addService(env, {
      name: 'api',
      kind: ServiceKind.SERVICE_KIND_CONTAINER,
      source: {
        $case: 'container',
        value: { image: EXAMPLE_REPO, tag: EXAMPLE_TAG, ports: [{ port: 8080, public: true }] },
      },
      envVars: [{ key: 'EXAMPLE_SCRIPT', value: script, secret: false }],
      readinessTimeoutSeconds: 30,
      healthCheck: httpCheck,
    });

    const deployed = await watchToEnd(stack, (await deployEnv(env)).id, 240_000);
    expect(runStatusName(deployed.final.status), deployed.final.message).toBe('SUCCEEDED');
    const runs = byName(deployed.final);
    expect(stateName(runs.keys!.status)).toBe('DEPLOYED');
    expect(runs.keys!.steps.map((s) => control.stepKindToJSON(s.kind))).toContain('STEP_KIND_EXECUTING');
    expect(runs.keys!.steps.map((s) => control.stepKindToJSON(s.kind))).not.toContain('STEP_KIND_DEPLOYMENT');
    const url = runs.api!.endpoints[0]!.url;
    expect(await get(`${url}/key.txt`)).toBe('key-from-the-job');
    expect(await get(`${url}/db.txt`)).toBe('reachable');
    const dbUrl = new URL(await get(`${url}/url.txt`));
    expect(dbUrl.protocol).toBe('postgresql:');
    expect(dbUrl.hostname).toBe('host.containers.internal');
    expect(dbUrl.port).toBe(String(managedPort));

    // The database is real: its role logs in with the password the service received.
    const asApp = async <T>(work: (c: pg.Client) => Promise<T>): Promise<T> => {
      const client = new pg.Client({
        host: '127.0.0.1',
        port: managedPort,
        user: decodeURIComponent(dbUrl.username),
        password: decodeURIComponent(dbUrl.password),
        database: dbUrl.pathname.slice(1),
      });
      await client.connect();
      try {
        return await work(client);
      } finally {
        await client.end();
      }
    };
    await asApp((c) => c.query("create table notes (body text); insert into notes values ('kept')"));

    const stopped = await watchToEnd(
      stack,
      (
        await callUnary(stack.deployments, 'stopEnvironment', {
          environmentId: env,
          requester: 'e2e',
          forceBuild: false,
        })
      ).deployment!.id,
    );
    expect(runStatusName(stopped.final.status), stopped.final.message).toBe('SUCCEEDED');
    // The job runs on DEPLOY and DELETE, not on STOP.
    expect(stateName(byName(stopped.final).keys!.status)).toBe('SKIPPED');
    expect((await asApp((c) => c.query('select body from notes'))).rows).toEqual([{ body: 'kept' }]);

    const again = await watchToEnd(stack, (await deployEnv(env)).id, 240_000);
    expect(runStatusName(again.final.status), again.final.message).toBe('SUCCEEDED');
    expect((await asApp((c) => c.query('select body from notes'))).rows).toEqual([{ body: 'kept' }]);
    expect(new URL(await get(`${byName(again.final).api!.endpoints[0]!.url}/url.txt`)).password).toBe(dbUrl.password);

    // ROLLBACK to the first run: the managed database is part of it (kept as it is), nothing is built.
    const { deployment: rollback } = await callUnary(stack.deployments, 'rollbackEnvironment', {
      environmentId: env,
      toDeploymentId: deployed.final.id,
      requester: 'e2e',
    });
    const back = await watchToEnd(stack, rollback!.id, 240_000);
    expect(runStatusName(back.final.status), back.final.message).toBe('SUCCEEDED');
    expect(stateName(byName(back.final).db!.status)).toBe('DEPLOYED');
    expect(stepsOf(back.final, StepKind.STEP_KIND_MIRROR_IMAGE)).toEqual([]);
    expect((await asApp((c) => c.query('select body from notes'))).rows).toEqual([{ body: 'kept' }]);

    const deleted = await watchToEnd(
      stack,
      (
        await callUnary(stack.deployments, 'deleteEnvironment', {
          environmentId: env,
          requester: 'e2e',
          forceBuild: false,
        })
      ).deployment!.id,
      240_000,
    );
    expect(runStatusName(deleted.final.status), deleted.final.message).toBe('SUCCEEDED');
    const onDelete = byName(deleted.final).keys!;
    // It ran for the DELETE (EXECUTING), then went with the environment.
    expect(stateName(onDelete.status)).toBe('DEPLOYED');
    expect(onDelete.steps.map((s) => control.stepKindToJSON(s.kind))).toContain('STEP_KIND_EXECUTING');
    expect(stateName(byName(deleted.final).db!.status)).toBe('DELETED');
    // Run before stage 0 goes (reverse order), it still had the database's connection details.
    const jobLines = await new Promise<string[]>((resolve, reject) => {
      const lines: string[] = [];
      const call = stack.deployments.streamLogs({ deploymentId: deleted.final.id, serviceId: job.id, follow: false });
      call.on('data', (m: control.StreamLogsResponse) => {
        if (m.line) lines.push(m.line.message);
      });
      call.on('end', () => resolve(lines));
      call.on('error', reject);
    });
    // Values injected from earlier stages are redacted in logs (`***`): the job had one, not "none".
    expect(jobLines.some((l) => /keys \| issuing a key for DELETE with database (?!none)\S+/.test(l))).toBe(true);
    const admin = new pg.Client({ connectionString: stackEnv.MANAGED_POSTGRES_URL });
    await admin.connect();
    try {
      const left = await admin.query('select datname from pg_database where datname = $1', [dbUrl.pathname.slice(1)]);
      expect(left.rows).toEqual([]);
    } finally {
      await admin.end();
    }
    void db;
  }, 600_000);

  it('a cron job runs exactly once per tick with two deploy processes, for real, its runs and logs visible', async () => {
    await stack.spawnWorker('deploy');
    expect(stack.procs.filter((p) => p.name === 'deploy')).toHaveLength(2);
    const env = (await createEnvironment(stack, 'cron')).environment!.id;
    const cron = await addService(env, {
      name: 'ticker',
      kind: ServiceKind.SERVICE_KIND_CRON_JOB,
      source: {
        $case: 'job',
        value: control.JobSource.fromPartial({
          from: { $case: 'container', value: { image: EXAMPLE_REPO, tag: EXAMPLE_TAG, ports: [] } },
          schedule: '* * * * *',
          maxDurationSeconds: 60,
        }),
      },
      envVars: [{ key: 'EXAMPLE_SCRIPT', value: 'echo "cron job ran"', secret: false }],
    });
    const deployed = await watchToEnd(stack, (await deployEnv(env)).id);
    expect(runStatusName(deployed.final.status), deployed.final.message).toBe('SUCCEEDED');
    expect(byName(deployed.final).ticker!.message).toContain('scheduled: "* * * * *" (UTC)');

    const runs = async () =>
      (await callUnary(stack.deployments, 'listCronRuns', { environmentId: env, serviceId: cron.id, limit: 10 })).runs;
    const claimed = () =>
      stack
        .logs('deploy')
        .split('\n')
        .filter((l) => l.includes('cron tick claimed') && l.includes(cron.id)).length;
    const waitForRuns = async (n: number) => {
      for (;;) {
        const list = await runs();
        if (list.length >= n && list.every((r) => r.status !== 'RUNNING')) return list;
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    // Drive the schedule's clock: the next minute after the deploy, then the one after.
    const first = Math.ceil((Date.now() + 1_000) / 60_000) * 60_000;
    writeFileSync(clockFile, String(first + 2_000));
    const one = await waitForRuns(1);
    writeFileSync(clockFile, String(first + 60_000 + 2_000));
    const two = await waitForRuns(2);
    expect(one).toHaveLength(1);
    expect(two.map((r) => r.scheduledAt!.getTime())).toEqual([first + 60_000, first]);
    for (const r of two) {
      expect(r).toMatchObject({ status: 'SUCCEEDED', exitCode: 0, revision: 1 });
      expect(r.log.some((l) => l.includes('ticker | cron job ran'))).toBe(true);
    }
    // Each tick was claimed, and so run, by exactly one of the two processes.
    expect(claimed()).toBe(2);
  }, 240_000);

  it('a custom Helm chart on the local runtime is refused before anything starts', async () => {
    const env = (await createEnvironment(stack, 'custom-chart')).environment!.id;
    await addService(env, {
      name: 'charted',
      kind: ServiceKind.SERVICE_KIND_CONTAINER,
      source: { $case: 'container', value: { image: EXAMPLE_REPO, tag: EXAMPLE_TAG, ports: [] } },
      chart: {
        source: { $case: 'repository', value: { url: 'https://charts.example.com', name: 'web', version: '1.0.0' } },
        valuesYaml: 'replicaCount: 2',
      },
    });
    const listed = await callUnary(stack.environments, 'listServices', { environmentId: env });
    expect(listed.services[0]!.chart?.source).toEqual({
      $case: 'repository',
      value: { url: 'https://charts.example.com', name: 'web', version: '1.0.0' },
    });
    const error = await deployEnv(env).catch((e: unknown) => e);
    expect(isServiceError(error) && error.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect((error as Error).message).toContain('only the kubernetes runtime can deploy');
    const history = await callUnary(stack.deployments, 'listDeployments', {
      environmentId: env,
      pageSize: 10,
      pageToken: '',
    });
    expect(history.deployments).toEqual([]);
  });
});
