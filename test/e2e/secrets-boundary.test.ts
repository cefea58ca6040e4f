// The boundary of issue 20, tested: deploy with a known secret (and a database whose password Stageline
// makes), then find neither in clear in Stageline's own stores — pg_dump of every schema, the NATS store
// directory, the services' logs, the run events — while the workload does hold them (its container's
// environment). The files that carry them to podman are gone once used; the charts are 0600 in 0700.
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import { callUnary, connect } from '@stageline/grpc';
import { bus as busv1, control } from '@stageline/proto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { found, scanStores } from '../../deploy/dev/secrets-boundary.ts';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, useStack, watchToEnd } from './stack.ts';

const run = promisify(execFile);
const SECRET = `boundary-${randomUUID()}`;

// A NATS server of this file's own, so that its whole store directory is ours to search.
const natsDir = mkdtempSync(join(tmpdir(), 'stageline-boundary-nats-'));
const nats = spawn(
  'nats-server',
  ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', join(natsDir, 'jetstream'), '--ports_file_dir', natsDir],
  { stdio: 'ignore' },
);
process.env.NATS_URL = await (async () => {
  for (let i = 0; i < 600; i++) {
    const ports = readdirSync(natsDir).find((n) => n.endsWith('.ports'));
    if (ports !== undefined) {
      try {
        const url = (JSON.parse(readFileSync(join(natsDir, ports), 'utf8')) as { nats: string[] }).nats[0];
        if (url) return url;
      } catch {
        // half written
      }
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('nats-server did not start');
})();

// Registered before the stack's own: hooks after all run last first, so the services stop before it.
afterAll(() => {
  nats.kill('SIGTERM');
  rmSync(natsDir, { recursive: true, force: true });
  rmSync(keyDir, { recursive: true, force: true });
});
// A key directory of the file's own: the rotation below touches no other test.
const keyDir = mkdtempSync(join(tmpdir(), 'stageline-boundary-keys-'));
writeFileSync(join(keyDir, 'k-boundary.key'), randomBytes(32).toString('base64'), { mode: 0o600 });
writeFileSync(join(keyDir, 'active'), 'k-boundary\n', { mode: 0o600 });
const stack = useStack({ env: { STAGELINE_SECRET_KEY_DIR: keyDir } });

const [IMAGE, TAG] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/) as [string, string];

describe('secrets never in clear in Stageline', () => {
  it('a deploy with a known secret and a generated database password leaves them only in the workload', async () => {
    const { environment, pipeline } = await createEnvironment(stack, 'boundary');
    const environmentId = environment!.id;
    const [dbStage, jobStage, containerStage] = pipeline!.stages;
    await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId,
        service: {
          name: 'db',
          kind: control.ServiceKind.SERVICE_KIND_DATABASE,
          stageId: dbStage!.id,
          source: {
            $case: 'database',
            value: {
              engine: control.DatabaseEngine.DATABASE_ENGINE_POSTGRESQL,
              mode: control.DatabaseMode.DATABASE_MODE_CONTAINER,
              image: IMAGE,
              version: TAG,
            },
          },
          // The example image stands in for postgres: it serves on the engine's port.
          envVars: [{ key: 'PORT', value: '5432' }],
          readinessTimeoutSeconds: 60,
        },
      }),
    );
    await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId,
        service: {
          name: 'migrate',
          kind: control.ServiceKind.SERVICE_KIND_LIFECYCLE_JOB,
          stageId: jobStage!.id,
          source: {
            $case: 'job',
            value: {
              from: { $case: 'container', value: { image: IMAGE, tag: TAG } },
              onDeploy: true,
              maxDurationSeconds: 60,
            },
          },
          // A workload that prints what it was given: its output is streamed and stored, redacted.
          envVars: [
            { key: 'EXAMPLE_SCRIPT', value: 'echo "token=$API_TOKEN"; echo "db=$DB_URL"' },
            { key: 'API_TOKEN', value: SECRET, secret: true },
          ],
        },
      }),
    );
    await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId,
        service: {
          name: 'web',
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          stageId: containerStage!.id,
          source: { $case: 'container', value: { image: IMAGE, tag: TAG, ports: [{ port: 8080, public: true }] } },
          // The example image serves MESSAGE: the workload shows it holds the secret.
          envVars: [{ key: 'MESSAGE', value: SECRET, secret: true }],
          healthCheck: { probe: { $case: 'http', value: { path: '/', port: 8080 } }, periodSeconds: 1 },
          readinessTimeoutSeconds: 60,
        },
      }),
    );
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      versions: {},
      environmentId,
      requester: 'e2e',
      forceBuild: false,
    });
    const { final } = await watchToEnd(stack, deployment!.id, 300_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');

    // The workload holds them: the secret in its environment (it serves it), the password injected.
    const web = final.services.find((s) => s.name === 'web')!;
    const body = await (await fetch(web.endpoints[0]!.url, { signal: AbortSignal.timeout(5_000) })).text();
    expect(body.trim()).toBe(SECRET);
    const pod = (
      await run('podman', [
        'ps',
        '--filter',
        `label=stageline.io/environment-id=${environmentId}`,
        '--format',
        '{{.Names}}',
      ])
    ).stdout
      .split('\n')
      .filter((n) => n.endsWith('-db'));
    expect(pod.length).toBe(1);
    const dbEnv = (await run('podman', ['exec', pod[0]!, 'env'])).stdout;
    const password = /^POSTGRES_PASSWORD=(.+)$/m.exec(dbEnv)?.[1] ?? '';
    expect(password.length).toBeGreaterThanOrEqual(24);

    // Stageline's stores — pg_dump of every schema, the NATS store directory, the services' logs, every
    // file of its state directory (charts sealed, 0600 in 0700; nothing left of what carried the secrets
    // to podman) — by the check `npm run demo` runs against its own stack.
    const scanned = await scanStores({
      databaseUrl: stack.isolated.databaseUrl,
      natsStoreDir: join(natsDir, 'jetstream'),
      logs: (['control', 'planner', 'build', 'deploy'] as const).map((name) => ({ name, text: stack.logs(name) })),
      stateDir: stack.stateDir,
      needles: { secret: SECRET, password },
    });
    expect(scanned.findings).toEqual([]);
    expect(scanned.modes).toEqual([]);
    expect(scanned.sealedInDump).toBeGreaterThan(0); // the secrets are there, sealed
    expect(scanned.natsFiles).toBeGreaterThan(0);
    // Charts live in the deploy schema (scanned in the dump above), their Secret files sealed; helm's
    // opened copies are gone.
    expect(scanned.chartFiles).toBe(0);
    expect(scanned.chartRows).toBeGreaterThan(0);
    expect(scanned.sealedChartRows).toBeGreaterThan(0);
    const needles = [SECRET, password];

    // The run events, and the run as the API shows it (steps, messages, log lines).
    const nc = await connectNats({ servers: process.env.NATS_URL! });
    try {
      const jsm = await jetstreamManager(nc);
      const stream = `${stack.isolated.busPrefix.toUpperCase()}_EVENTS`;
      const info = await jsm.streams.info(stream);
      let runEvents = 0;
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
        if (m === null || !m.subject.includes('.events.runs.')) continue;
        runEvents++;
        const event = busv1.DeploymentEvent.decode(m.data);
        expect(found(JSON.stringify(busv1.DeploymentEvent.toJSON(event)), needles)).toEqual([]);
      }
      expect(runEvents).toBeGreaterThan(0);
    } finally {
      await nc.close();
    }
    const shown = await callUnary(stack.deployments, 'getDeployment', { deploymentId: deployment!.id });
    expect(found(JSON.stringify(control.GetDeploymentResponse.toJSON(shown)), needles)).toEqual([]);
    // The job did print them: its log lines say so, redacted.
    const migrate = final.services.find((s) => s.name === 'migrate')!;
    const lines: string[] = [];
    const stream = stack.deployments.streamLogs({
      deploymentId: deployment!.id,
      serviceId: migrate.serviceId,
      follow: false,
    });
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (m: control.StreamLogsResponse) => {
        if (m.line) lines.push(m.line.message);
      });
      stream.on('end', () => resolve());
      stream.on('error', reject);
    });
    expect(lines).toContain('migrate | token=***');
    // Every value injected from an earlier stage is treated as secret (it goes to the Secret, too).
    expect(lines).toContain('migrate | db=postgresql://***:***@db:***/***');
    expect(found(lines.join('\n'), needles)).toEqual([]);

    // The chart store (the deploy schema's chart_file) holds the Secret sealed only, and helm's copies in
    // clear are gone: the scan above checked both (sealedChartRows, no finding in the dump, chartFiles 0).
  });

  it('stageline admin rotate-key: the values in every schema are sealed again under the new key, online, and deploys go on', async () => {
    const dumpNow = async () =>
      (await run('pg_dump', ['--no-owner', stack.isolated.databaseUrl], { maxBuffer: 256 * 1024 * 1024 })).stdout;
    expect(await dumpNow()).toContain('sl:v1:k-boundary:');
    const access = connect(
      control.AccessServiceClient,
      stack.procs.find((p) => p.name === 'control')!.address,
      stack.security.user(),
    );
    let keyId: string;
    try {
      ({ keyId } = await callUnary(access, 'rotateSecretKey', {}));
    } finally {
      access.close();
    }
    // control answered once its own were sealed again; the planner and deploy follow within seconds.
    let dump = await dumpNow();
    for (let i = 0; i < 120 && dump.includes('sl:v1:k-boundary:'); i++) {
      await new Promise((r) => setTimeout(r, 500));
      dump = await dumpNow();
    }
    expect(dump.match(/sl:v1:k-boundary:\S{0,12}/g) ?? []).toEqual([]);
    expect(dump).toContain(`sl:v1:${keyId}:`);

    // A redeploy runs on the new key end to end: the workload still gets its secret.
    const environmentId = (
      await callUnary(stack.environments, 'listEnvironments', { project: 'e2e', pageSize: 10, pageToken: '' })
    ).environments.find((e) => e.name === 'boundary')!.id;
    const { deployment } = await callUnary(stack.deployments, 'redeployEnvironment', {
      environmentId,
      requester: 'e2e',
      forceBuild: false,
    });
    const { final } = await watchToEnd(stack, deployment!.id, 300_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    const web = final.services.find((s) => s.name === 'web')!;
    const body = await (await fetch(web.endpoints[0]!.url, { signal: AbortSignal.timeout(5_000) })).text();
    expect(body.trim()).toBe(SECRET);
  });

  it('a rollback deploys the secret values its target run deployed, kept sealed in that run', async () => {
    const environmentId = (
      await callUnary(stack.environments, 'listEnvironments', { project: 'e2e', pageSize: 10, pageToken: '' })
    ).environments.find((e) => e.name === 'boundary')!.id;
    const history = await callUnary(stack.deployments, 'listDeployments', {
      environmentId,
      pageSize: 10,
      pageToken: '',
    });
    const first = history.deployments.at(-1)!;
    const { services } = await callUnary(stack.environments, 'listServices', { environmentId });
    const web = services.find((s) => s.name === 'web')!;
    const NEXT = `next-${randomUUID()}`;
    await callUnary(stack.environments, 'updateService', {
      environmentId,
      service: { ...web, envVars: [{ key: 'MESSAGE', value: NEXT, secret: true }] },
    });
    const bodyAfter = async (deploymentId: string) => {
      const { final } = await watchToEnd(stack, deploymentId, 300_000);
      expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
      const url = final.services.find((s) => s.name === 'web')!.endpoints[0]!.url;
      return (await (await fetch(url, { signal: AbortSignal.timeout(5_000) })).text()).trim();
    };
    const deployed = await callUnary(stack.deployments, 'deployEnvironment', {
      versions: {},
      environmentId,
      requester: 'e2e',
      forceBuild: false,
    });
    expect(await bodyAfter(deployed.deployment!.id)).toBe(NEXT);
    const rolledBack = await callUnary(stack.deployments, 'rollbackEnvironment', {
      environmentId,
      toDeploymentId: first.id,
      requester: 'e2e',
    });
    expect(await bodyAfter(rolledBack.deployment!.id)).toBe(SECRET);
  });

  it('deleting the environment purges its secret values, sealed ones included, from every schema', async () => {
    const environmentId = (
      await callUnary(stack.environments, 'listEnvironments', { project: 'e2e', pageSize: 10, pageToken: '' })
    ).environments.find((e) => e.name === 'boundary')!.id;
    const serviceIds = (await callUnary(stack.environments, 'listServices', { environmentId })).services.map(
      (s) => s.id,
    );
    const db = new pg.Client({ connectionString: stack.isolated.databaseUrl });
    await db.connect();
    const sealedLeft = async () => {
      const count = async (sql: string, params: unknown[]) => Number((await db.query(sql, params)).rows[0].n);
      return {
        control: await count(
          `select count(*) as n from control.service where environment_id = $1 and secrets <> '{}'::jsonb`,
          [environmentId],
        ),
        plannerRuns: await count(
          `select count(*) as n from planner.deployment where environment_id = $1
             and (coalesce(snapshot::text, '') like '%sl:v1:%' or coalesce(state::text, '') like '%sl:v1:%')`,
          [environmentId],
        ),
        plannerServiceRuns: await count(
          `select count(*) as n from planner.service_run r join planner.deployment d on d.id = r.deployment_id
             where d.environment_id = $1 and r.run::text like '%sl:v1:%'`,
          [environmentId],
        ),
        plannerStatuses: await count(
          `select count(*) as n from planner.service_status where environment_id = $1 and outputs <> '{}'::jsonb`,
          [environmentId],
        ),
        deployPasswords: await count('select count(*) as n from deploy.database_credential where environment_id = $1', [
          environmentId,
        ]),
        deployOutcomes: await count(
          `select count(*) as n from deploy.job_result where service_id = any($1) and result::text like '%sl:v1:%'`,
          [serviceIds],
        ),
      };
    };
    try {
      expect(Object.values(await sealedLeft()).some((n) => n > 0)).toBe(true);
      const { deployment } = await callUnary(stack.deployments, 'deleteEnvironment', {
        environmentId,
        requester: 'e2e',
        forceBuild: false,
      });
      const { final } = await watchToEnd(stack, deployment!.id, 300_000);
      expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
      // Control and the planner follow the run's end and the environment's removal: soon, not at once.
      let left = await sealedLeft();
      for (let i = 0; i < 120 && Object.values(left).some((n) => n > 0); i++) {
        await new Promise((r) => setTimeout(r, 250));
        left = await sealedLeft();
      }
      expect(left).toEqual({
        control: 0,
        plannerRuns: 0,
        plannerServiceRuns: 0,
        plannerStatuses: 0,
        deployPasswords: 0,
        deployOutcomes: 0,
      });
    } finally {
      await db.end();
    }
  });
});
