// The fault suite: faults of Stageline's own machinery injected in the middle of a real run (the four
// services as processes, real podman deploys), on a PostgreSQL and a NATS server of this file's own —
// never the machine's shared 5432 and 4222, which other tests use. Each fault must end the run the way
// the workload decides (SUCCEEDED here), never FAILED because Stageline's database or bus blinked.
// The time from the fault to the run's end is printed (`fault figure: …`), not asserted.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callUnary, connect } from '@stageline/grpc';
import { control, deploy } from '@stageline/proto';
import { type FaultServer, startOwnNats, startOwnPostgres } from '@stageline/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createEnvironment,
  EXAMPLE_IMAGE,
  runStatusName,
  type Stack,
  stateName,
  useStack,
  watchToEnd,
} from './stack.ts';

const postgres: FaultServer = await startOwnPostgres();
const nats: FaultServer = await startOwnNats();
// The test kit takes DATABASE_URL and NATS_URL first: the stack runs on these two servers.
process.env.DATABASE_URL = postgres.url;
process.env.NATS_URL = nats.url;

const scratch = mkdtempSync(join(tmpdir(), 'stageline-faults-'));

// Registered before the stack's own hooks, so it runs after them (afterAll hooks run in reverse).
afterAll(async () => {
  await postgres.destroy();
  await nats.destroy();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

// Default worker settings (no WORKER_ACK_WAIT_MS): the defaults are what is measured.
const stack = useStack();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An environment of `count` containers in one stage, each ready only after `readyAfterS` seconds. */
async function environment(stack: Stack, name: string, count: number, readyAfterS: number): Promise<string> {
  const { environment, pipeline } = await createEnvironment(stack, name);
  const envId = environment!.id;
  const [image = '', tag = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);
  for (let i = 0; i < count; i++) {
    await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: envId,
        service: {
          name: `svc-${i}`,
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          // Two stages: a fault during the first must not cancel the second.
          stageId: pipeline!.stages[i % 2 === 0 ? 2 : 3]!.id,
          source: { $case: 'container', value: { image, tag, ports: [{ port: 8080, public: false }] } },
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
  }
  return envId;
}

/** Starts a DEPLOY and waits until at least one deploy step is running. */
async function deployUntilDeploying(stack: Stack, envId: string): Promise<string> {
  const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
    environmentId: envId,
    requester: 'faults',
    forceBuild: false,
  });
  const id = deployment!.id;
  for (let i = 0; i < 1200; i++) {
    const d = (await callUnary(stack.deployments, 'getDeployment', { deploymentId: id }, { retry: true })).deployment!;
    if (d.services.some((s) => s.steps.some((st) => st.kind === control.StepKind.STEP_KIND_DEPLOYMENT))) return id;
    await sleep(100);
  }
  throw new Error(`run ${id} never reached a deploy step`);
}

function figure(fault: string, faultAt: number, final: control.Deployment): void {
  const end = final.finishedAt?.getTime() ?? Date.now();
  console.log(
    `fault figure: ${fault}: run ${runStatusName(final.status)} ${((end - faultAt) / 1000).toFixed(1)} s after the fault`,
  );
}

describe('faults of Stageline itself, mid-run', () => {
  it('PostgreSQL stopped (immediate) and started again: the run succeeds', async () => {
    const envId = await environment(stack, 'pg-restart', 3, 4);
    const id = await deployUntilDeploying(stack, envId);
    const faultAt = Date.now();
    await postgres.stop();
    await sleep(3_000);
    await postgres.start();
    const { final } = await watchToEnd(stack, id, 300_000);
    figure('PostgreSQL stopped 3 s', faultAt, final);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    expect(final.services.map((s) => stateName(s.status))).toEqual(['DEPLOYED', 'DEPLOYED', 'DEPLOYED']);
  });

  it('NATS killed and started again: the run succeeds', async () => {
    const envId = await environment(stack, 'nats-restart', 3, 4);
    const id = await deployUntilDeploying(stack, envId);
    const faultAt = Date.now();
    await nats.stop();
    await sleep(3_000);
    await nats.start();
    const { final } = await watchToEnd(stack, id, 300_000);
    figure('NATS killed 3 s', faultAt, final);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
  });

  it('the deploy worker killed (kill -9) and restarted 2 s later: its jobs move on, the run succeeds', async () => {
    const envId = await environment(stack, 'worker-kill', 2, 3);
    const id = await deployUntilDeploying(stack, envId);
    const worker = stack.procs.find(
      (p) => p.name === 'deploy' && p.child.exitCode === null && p.child.signalCode === null,
    )!;
    const faultAt = Date.now();
    worker.child.kill('SIGKILL');
    await worker.exited;
    await sleep(2_000);
    await stack.spawnWorker('deploy');
    const { final } = await watchToEnd(stack, id, 300_000);
    figure('deploy worker kill -9, restarted after 2 s', faultAt, final);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
  });

  it('the build worker killed (kill -9) mid-build and restarted 2 s later: the build moves on, the run succeeds', async () => {
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
      `FROM ${EXAMPLE_IMAGE}\nLABEL stageline.faults.run=${Date.now().toString(36)}\nRUN echo slow-build-started && sleep 4 && echo slow-build-done\n`,
    );
    git(['add', '-A'], work);
    git(['commit', '--quiet', '-m', 'slow'], work);
    git(['push', '--quiet', bare, 'HEAD:refs/heads/main'], work);

    const { environment, pipeline } = await createEnvironment(stack, 'build-kill');
    await callUnary(
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
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      environmentId: environment!.id,
      requester: 'faults',
      forceBuild: false,
    });
    const id = deployment!.id;
    for (let i = 0; i < 1200; i++) {
      const d = (await callUnary(stack.deployments, 'getDeployment', { deploymentId: id })).deployment!;
      if (d.services.some((s) => s.steps.some((st) => st.kind === control.StepKind.STEP_KIND_BUILD))) break;
      await sleep(100);
    }
    const worker = stack.procs.find(
      (p) => p.name === 'build' && p.child.exitCode === null && p.child.signalCode === null,
    )!;
    const faultAt = Date.now();
    worker.child.kill('SIGKILL');
    await worker.exited;
    await sleep(2_000);
    await stack.spawnWorker('build');
    const { final } = await watchToEnd(stack, id, 300_000);
    figure('build worker kill -9 mid-build, restarted after 2 s', faultAt, final);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
  });

  it('the deploy worker frozen (SIGSTOP) past its ack wait, then thawed: one live copy, one release per service', async () => {
    const envId = await environment(stack, 'worker-freeze', 2, 3);
    const ids = (await callUnary(stack.environments, 'listServices', { environmentId: envId })).services.map(
      (s) => s.id,
    );
    // The first stage's job is on the only deploy worker; then a second one starts, and the first freezes.
    const frozen = stack.procs.find(
      (p) => p.name === 'deploy' && p.child.exitCode === null && p.child.signalCode === null,
    )!;
    const id = await deployUntilDeploying(stack, envId);
    const second = await stack.spawnWorker('deploy');
    const faultAt = Date.now();
    frozen.child.kill('SIGSTOP');
    try {
      const { final } = await watchToEnd(stack, id, 300_000);
      figure('deploy worker frozen (SIGSTOP), another worker running', faultAt, final);
      expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');
    } finally {
      frozen.child.kill('SIGCONT');
    }
    // Thawed: it finds the jobs' leases taken at its next heartbeat or report, and records nothing.
    await sleep(8_000);
    const releases = connect(deploy.ReleaseServiceClient, second.address, stack.security.service('control'));
    try {
      for (const serviceId of ids) {
        const list = await callUnary(releases, 'listReleases', { serviceId });
        expect(
          list.releases.filter((r) => r.status === 'DEPLOYED'),
          JSON.stringify(list.releases),
        ).toHaveLength(1);
      }
    } finally {
      releases.close();
    }
  });
});
