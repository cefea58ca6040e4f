// The fault suite: faults of Stageline's own machinery injected in the middle of a real run (the four
// services as processes, real podman deploys), on a PostgreSQL and a NATS server of this file's own —
// never the machine's shared 5432 and 4222, which other tests use. Every fault must end its run the way
// the workload decides — SUCCEEDED, or FAILED with its reason for the dead-lettered job — never because
// Stageline's database, bus or a process of its own blinked; every service has exactly one release for
// the run (nothing lost, nothing done twice), and every request accepted has a finished run.
// It prints a table: fault | outcome | seconds from the fault to the run's end | releases per service.
// The seconds are printed, never asserted (speed belongs to test/bench).

import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HEADERS, provisionBus } from '@stageline/bus';
import { callUnary } from '@stageline/grpc';
import { bus as busv1, control, type deploy } from '@stageline/proto';
import { type FaultNats, type FaultServer, freePort, startOwnNats, startOwnPostgres } from '@stageline/testkit';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, stateName, useStack } from './stack.ts';

const postgres: FaultServer = await startOwnPostgres();
const nats: FaultNats = await startOwnNats();
// The test kit takes DATABASE_URL and NATS_URL first: the stack runs on these two servers.
process.env.DATABASE_URL = postgres.url;
process.env.NATS_URL = nats.url;

const scratch = mkdtempSync(join(tmpdir(), 'stageline-faults-'));

interface Row {
  fault: string;
  outcome: string;
  seconds: string;
  releases: string;
}
const table: Row[] = [];

// Registered before the stack's own hooks, so it runs after them (afterAll hooks run in reverse).
afterAll(async () => {
  printTable();
  await postgres.destroy();
  await nats.destroy();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

// Default worker settings (no WORKER_ACK_WAIT_MS): the defaults are what is measured. MANAGED databases
// go to a server nobody listens on: the dead-lettered job's fault.
const stack = useStack({ env: { MANAGED_POSTGRES_URL: `postgres://postgres@127.0.0.1:${await freePort()}/postgres` } });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const [IMAGE = '', TAG = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
const TERMINAL = ['SUCCEEDED', 'FAILED', 'CANCELED'];

function printTable(): void {
  const header: Row = {
    fault: 'fault',
    outcome: 'outcome',
    seconds: 'seconds from fault to run end',
    releases: 'releases per service',
  };
  const rows = [header, ...table];
  const width = (k: keyof Row) => Math.max(...rows.map((r) => r[k].length));
  const line = (r: Row) =>
    `| ${r.fault.padEnd(width('fault'))} | ${r.outcome.padEnd(width('outcome'))} | ${r.seconds.padStart(width('seconds'))} | ${r.releases.padEnd(width('releases'))} |`;
  const rule = `| ${'-'.repeat(width('fault'))} | ${'-'.repeat(width('outcome'))} | ${'-'.repeat(width('seconds'))} | ${'-'.repeat(width('releases'))} |`;
  console.log(['fault suite:', line(header), rule, ...table.map(line)].join('\n'));
}

interface Env {
  envId: string;
  serviceIds: string[];
}

/**
 * An environment of `count` containers, each ready only after `readyAfterS` seconds: over two stages (a
 * fault during the first must not cancel the second), or all in one.
 */
async function environment(name: string, count: number, readyAfterS: number, stages: 1 | 2 = 2): Promise<Env> {
  const { environment, pipeline } = await createEnvironment(stack, name);
  const envId = environment!.id;
  const serviceIds: string[] = [];
  for (let i = 0; i < count; i++) {
    const { service } = await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: envId,
        service: {
          name: `svc-${i}`,
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          stageId: pipeline!.stages[stages === 2 && i % 2 === 1 ? 3 : 2]!.id,
          source: { $case: 'container', value: { image: IMAGE, tag: TAG, ports: [{ port: 8080, public: false }] } },
          envVars: [
            {
              key: 'EXAMPLE_SCRIPT',
              value: `sleep ${readyAfterS}; exec /bin/busybox httpd -f -p 8080 -h /www`,
              secret: false,
            },
          ],
          healthCheck: { probe: { $case: 'tcp', value: { port: 8080 } }, periodSeconds: 1 },
          readinessTimeoutSeconds: 120,
        },
      }),
    );
    serviceIds.push(service!.id);
  }
  return { envId, serviceIds };
}

async function getRun(id: string): Promise<control.Deployment> {
  return (await callUnary(stack.deployments, 'getDeployment', { deploymentId: id }, { retry: { withinMs: 60_000 } }))
    .deployment!;
}

async function startRun(envId: string): Promise<string> {
  const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
    versions: {},
    environmentId: envId,
    requester: 'faults',
    forceBuild: false,
  });
  return deployment!.id;
}

/** Waits until the run shows a step of `kind` (default: a deploy step). */
async function untilStep(id: string, kind: control.StepKind = control.StepKind.STEP_KIND_DEPLOYMENT): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    const d = await getRun(id);
    if (d.services.some((s) => s.steps.some((st) => st.kind === kind))) return;
    await sleep(100);
  }
  throw new Error(`run ${id} never reached a ${control.stepKindToJSON(kind)} step`);
}

/** Polls the run until it ends (polling, not a watch: control itself may be the process that died). */
async function untilEnd(id: string, timeoutMs = 240_000): Promise<control.Deployment> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = await getRun(id);
    if (TERMINAL.includes(runStatusName(d.status))) return d;
    if (Date.now() > deadline) throw new Error(`run ${id} did not finish: ${runStatusName(d.status)}`);
    await sleep(250);
  }
}

/** Per service, the releases the run made. */
async function runReleases(env: Env, runId: string): Promise<deploy.Release[][]> {
  const out: deploy.Release[][] = [];
  for (const serviceId of env.serviceIds) {
    const { releases } = await callUnary(stack.deployments, 'listReleases', { environmentId: env.envId, serviceId });
    out.push(releases.filter((r) => r.deploymentId === runId));
  }
  return out;
}

/** Every run of the environment (every request accepted became one) has finished. */
async function requestsFinished(envId: string): Promise<control.Deployment[]> {
  for (let i = 0; ; i++) {
    const { deployments } = await callUnary(stack.deployments, 'listDeployments', {
      environmentId: envId,
      pageSize: 500,
      pageToken: '',
    });
    if (deployments.every((d) => TERMINAL.includes(runStatusName(d.status))) || i > 240) return deployments;
    await sleep(250);
  }
}

/**
 * Waits for the run's end, records the table row, and checks what every fault must leave: the outcome,
 * exactly one release per service of the run (for a run that deployed), every request finished.
 */
async function verdict(
  fault: string,
  faultAt: number,
  env: Env,
  runId: string,
  expected: 'SUCCEEDED' | 'FAILED' = 'SUCCEEDED',
): Promise<control.Deployment> {
  const final = await untilEnd(runId);
  const made = await runReleases(env, runId);
  const releases = made.map((r) => r.length);
  const end = final.finishedAt?.getTime() ?? Date.now();
  const row: Row = {
    fault,
    outcome: runStatusName(final.status) + (expected === 'FAILED' ? ` (${final.message.slice(0, 110)})` : ''),
    seconds: ((end - faultAt) / 1000).toFixed(1),
    // The count per service, with the statuses of any release not live (a failed deploy's record).
    releases: made
      .map((r) => {
        const other = r.filter((x) => x.status !== 'DEPLOYED').map((x) => x.status);
        return other.length === 0 ? String(r.length) : `${r.length} (${other.join(', ')})`;
      })
      .join(', '),
  };
  table.push(row);
  console.log(`fault figure: ${JSON.stringify(row)}`);
  expect(runStatusName(final.status), final.message).toBe(expected);
  if (expected === 'SUCCEEDED') {
    expect(final.services.map((s) => stateName(s.status))).toEqual(env.serviceIds.map(() => 'DEPLOYED'));
    expect(releases, 'releases of the run, per service').toEqual(env.serviceIds.map(() => 1));
  }
  const runs = await requestsFinished(env.envId);
  expect(
    runs.map((d) => runStatusName(d.status)).filter((s) => !TERMINAL.includes(s)),
    'runs not finished',
  ).toEqual([]);
  return final;
}

/** Re-creates the streams, consumers and buckets, as Stageline's start-up does (stack.sh provision). */
async function provisionAgain(): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await provisionBus(stack.bus);
      return;
    } catch (e) {
      if (i > 60) throw e;
      await sleep(500); // the test's own connection is still reconnecting
    }
  }
}

describe('the fault suite: faults of Stageline itself, mid-run', () => {
  it('PostgreSQL stopped (immediate) and started again 3 s later', async () => {
    const env = await environment('pg-restart', 2, 3);
    const id = await startRun(env.envId);
    await untilStep(id);
    const faultAt = Date.now();
    await postgres.stop();
    await sleep(3_000);
    await postgres.start();
    await verdict('PostgreSQL restarted', faultAt, env, id);
  });

  it('NATS killed (kill -9) and started again 3 s later, its store kept', async () => {
    const env = await environment('nats-restart', 2, 3);
    const id = await startRun(env.envId);
    await untilStep(id);
    const faultAt = Date.now();
    await nats.stop();
    await sleep(3_000);
    await nats.start();
    await verdict('NATS restarted', faultAt, env, id);
  });

  it('the NATS store lost: streams, consumers and buckets re-provisioned, lost jobs dispatched again', async () => {
    // Two services in each stage, ready after 10 s: the first stage's jobs are running (their messages in
    // the stream) when it goes, so the planner dispatches them again and the new copies replace the old.
    const env = await environment('nats-store-lost', 4, 10);
    const id = await startRun(env.envId);
    await untilStep(id);
    const faultAt = Date.now();
    await nats.loseStore();
    await provisionAgain();
    await verdict('NATS store lost', faultAt, env, id);
    const planner = stack.logs('planner');
    expect(planner).toContain('dispatched again');
  });

  for (const name of ['control', 'planner'] as const) {
    it(`${name} killed (kill -9) mid-run and started again 1 s later`, async () => {
      const env = await environment(`${name}-kill`, 2, 3);
      const id = await startRun(env.envId);
      await untilStep(id);
      const faultAt = Date.now();
      await stack.crash(name, 1_000);
      await verdict(`${name} kill -9`, faultAt, env, id);
    });
  }

  it('the deploy worker killed (kill -9) holding jobs, another one running', async () => {
    // Both services in one stage, on the one deploy worker, long enough to be in flight at the kill.
    const env = await environment('deploy-kill', 2, 8, 1);
    const doomed = stack.live('deploy');
    const id = await startRun(env.envId);
    await untilStep(id);
    // Its jobs move on to the other process within the ack wait (6 s).
    await stack.spawnWorker('deploy');
    const faultAt = Date.now();
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    // Control reaches the deploy service where the killed one was: one comes back there (the jobs are
    // the other one's already, or whichever pulls first).
    await stack.spawnAt('deploy', doomed.address);
    await verdict('deploy worker kill -9', faultAt, env, id);
  });

  it('the build worker killed (kill -9) mid-build, another one running', async () => {
    // A git application whose build has a slow step (a label unique to this run defeats buildah's cache).
    const git = (args: string[], cwd?: string) =>
      execFileSync('git', args, {
        cwd,
        encoding: 'utf8',
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 'f',
          GIT_AUTHOR_EMAIL: 'f@x.invalid',
          GIT_COMMITTER_NAME: 'f',
          GIT_COMMITTER_EMAIL: 'f@x.invalid',
          GIT_CONFIG_NOSYSTEM: '1',
        },
      });
    const bare = join(scratch, 'slow.git');
    const work = join(scratch, 'work');
    git(['init', '--quiet', '--bare', '--initial-branch=main', bare]);
    git(['init', '--quiet', '--initial-branch=main', work]);
    writeFileSync(
      join(work, 'Dockerfile'),
      `FROM ${EXAMPLE_IMAGE}\nLABEL stageline.faults.run=${Date.now().toString(36)}\nRUN echo slow-build-started && sleep 8 && echo slow-build-done\n`,
    );
    git(['add', '-A'], work);
    git(['commit', '--quiet', '-m', 'slow'], work);
    git(['push', '--quiet', bare, 'HEAD:refs/heads/main'], work);

    const { environment, pipeline } = await createEnvironment(stack, 'build-kill');
    const { service } = await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: environment!.id,
        service: {
          name: 'slow',
          kind: control.ServiceKind.SERVICE_KIND_APPLICATION,
          stageId: pipeline!.stages[3]!.id,
          source: { $case: 'application', value: { gitUrl: `file://${bare}`, branch: 'main' } },
        },
      }),
    );
    const env = { envId: environment!.id, serviceIds: [service!.id] };
    const doomed = stack.live('build');
    const id = await startRun(env.envId);
    await untilStep(id, control.StepKind.STEP_KIND_BUILD);
    await stack.spawnWorker('build');
    const faultAt = Date.now();
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    await stack.spawnAt('build', doomed.address);
    await verdict('build worker kill -9 mid-build', faultAt, env, id);
  });

  it('the deploy worker frozen (SIGSTOP) past its ack wait, then thawed: one live copy', async () => {
    const env = await environment('worker-freeze', 2, 3);
    // The first stage's job is on the running deploy worker; then a second one starts, and the first freezes.
    const frozen = stack.live('deploy');
    const id = await startRun(env.envId);
    await untilStep(id);
    await stack.spawnWorker('deploy');
    const faultAt = Date.now();
    frozen.child.kill('SIGSTOP');
    try {
      await untilEnd(id);
    } finally {
      frozen.child.kill('SIGCONT');
    }
    // Thawed: it finds the jobs' leases taken at its next heartbeat or report, and records nothing.
    await sleep(8_000);
    await verdict('deploy worker SIGSTOP past ack wait', faultAt, env, id);
  });

  it('every request duplicated on the bus: one run', async () => {
    const env = await environment('duplicates', 2, 2);
    const request = busv1.ActionRequested.encode(
      busv1.ActionRequested.fromPartial({
        requestId: `dup-${randomUUID()}`,
        environmentId: env.envId,
        action: control.Action.ACTION_DEPLOY,
        requester: 'faults',
      }),
    ).finish();
    const subject = stack.bus.subjects.requests(env.envId);
    const faultAt = Date.now();
    // Twice under different message ids (the stream keeps both), then once more under the first one.
    await stack.bus.publish(subject, request, { msgId: 'dup-1' });
    await stack.bus.publish(subject, request, { msgId: 'dup-2' });
    await stack.bus.publish(subject, request, { msgId: 'dup-1' });
    let runs: control.Deployment[] = [];
    for (let i = 0; i < 600 && runs.length === 0; i++) {
      runs = (
        await callUnary(stack.deployments, 'listDeployments', { environmentId: env.envId, pageSize: 10, pageToken: '' })
      ).deployments;
      if (runs.length === 0) await sleep(100);
    }
    await verdict('every request duplicated', faultAt, env, runs[0]!.id);
    const all = await requestsFinished(env.envId);
    expect(all, 'one run for the request sent three times').toHaveLength(1);
  });

  it('poison on every consumed subject: dead-lettered with a reason, the run goes on', async () => {
    const env = await environment('poison-all', 2, 3);
    const id = await startRun(env.envId);
    await untilStep(id);
    const s = stack.bus.subjects;
    const poisoned = [
      s.requests(env.envId),
      s.buildJobs(id),
      s.deployJobs(id),
      s.buildResults(id),
      s.deployResults(id),
      s.environmentEvents(env.envId),
      s.runEvents(env.envId, id),
    ];
    const garbage = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]);
    const faultAt = Date.now();
    for (const subject of poisoned) await stack.bus.publish(subject, garbage);
    await verdict('poison on every consumed subject', faultAt, env, id);
    // Every poisoned subject's message reached the dead letters, each with why.
    const dlq = s.streams.dlq;
    const found = new Map<string, string>();
    for (let i = 0; i < 240 && found.size < poisoned.length; i++) {
      const info = await stack.bus.jsm.streams.info(dlq);
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await stack.bus.jsm.streams.getMessage(dlq, { seq }).catch(() => null);
        const original = m?.header.get(HEADERS.dlqSubject);
        if (m && original && poisoned.includes(original) && m.data.length === garbage.length) {
          found.set(original, m.header.get(HEADERS.dlqReason));
        }
      }
      if (found.size < poisoned.length) await sleep(250);
    }
    expect([...found.keys()].sort()).toEqual([...poisoned].sort());
    for (const reason of found.values()) expect(reason).not.toBe('');
  });

  it('an unpublishable outbox row (over max_payload) mid-run: set aside, the run goes on', async () => {
    const env = await environment('outbox-wedge', 2, 3);
    const id = await startRun(env.envId);
    await untilStep(id);
    const db = new pg.Client({ connectionString: stack.isolated.databaseUrl });
    await db.connect();
    try {
      const rowId = randomUUID();
      const faultAt = Date.now();
      // As the 1.31 MB service event once was: ahead of the run's next events in the planner's outbox.
      await db.query(
        'insert into planner.outbox_message (id, subject, payload, created_at) values ($1, $2, $3, now())',
        [rowId, stack.bus.subjects.runEvents(env.envId, id), randomBytes(1_310_000)],
      );
      await verdict('unpublishable outbox row', faultAt, env, id);
      const setAside = await db.query<{ id: string; reason: string }>(
        'select id, reason from planner.outbox_set_aside where id = $1',
        [rowId],
      );
      expect(setAside.rows).toHaveLength(1);
      expect(setAside.rows[0]!.reason).toMatch(/max_payload/);
    } finally {
      await db.end();
    }
  });

  it('a job dead-lettered (its managed database server never answers): the run ends FAILED with the reason', async () => {
    // Every delivery of the job fails as retryable (the server is down: worth another try), the worker
    // dead-letters it after its last one, and the planner fails the service with why.
    const { environment, pipeline } = await createEnvironment(stack, 'dead-letter');
    const { service } = await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: environment!.id,
        service: {
          name: 'db',
          kind: control.ServiceKind.SERVICE_KIND_DATABASE,
          stageId: pipeline!.stages[2]!.id,
          source: { $case: 'database', value: { engine: 1, version: '15', mode: 2, image: '' } },
        },
      }),
    );
    const env = { envId: environment!.id, serviceIds: [service!.id] };
    const id = await startRun(env.envId);
    const faultAt = Date.now();
    const final = await verdict('a job dead-lettered', faultAt, env, id, 'FAILED');
    expect(stateName(final.services[0]!.status)).toBe('DEPLOYMENT_ERROR');
    expect(final.services[0]!.message).toMatch(
      /the deploy worker gave up on the job: .*the managed PostgreSQL server is unavailable/,
    );
    // What the deploy service recorded for the run: nothing live.
    const [releases = []] = await runReleases(env, id);
    expect(
      releases.filter((r) => r.status === 'DEPLOYED'),
      JSON.stringify(releases),
    ).toEqual([]);
  });
});
