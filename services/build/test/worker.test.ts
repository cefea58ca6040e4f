// The real entry point consuming build jobs: a MIRROR job published on the bus comes back as step and
// result events on the results stream, with its log lines on the logs stream.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Bus, decodeJobEvents } from '@stageline/bus';
import { bus as busv1, control } from '@stageline/proto';
import { type ResolvedServer, resolveRegistry, testSecurity, useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '../src/adapters/registry/client.ts';
import { pushImage, silentLog, uniqueName } from './support.ts';

const entry = fileURLToPath(new URL('../src/main.ts', import.meta.url));
const isolated = useIsolatedEnvironment();
let mirrorServer: ResolvedServer;
let externalServer: ResolvedServer;
let child: ChildProcess | undefined;
let output = '';
let bus: Bus;

beforeAll(async () => {
  mirrorServer = await resolveRegistry();
  externalServer = await resolveRegistry({ strategy: 'binary' });
  bus = await Bus.connect({
    url: isolated.natsUrl,
    prefix: isolated.busPrefix,
    name: 'build-worker-test',
    log: silentLog,
  });
  await bus.ensureStreams();
  child = spawn(process.execPath, [entry], {
    env: {
      ...process.env,
      ...isolated.env,
      // Its certificate and the CA (STAGELINE_TLS_DIR): no service starts without TLS.
      ...testSecurity().env,
      GRPC_LISTEN: '127.0.0.1:0',
      MIRROR_REGISTRY: new URL(mirrorServer.url).host,
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  await waitFor(
    () => output.includes('"msg":"worker consuming"'),
    () => `build did not start consuming:\n${output}`,
  );
});

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    const exited = new Promise((resolve) => child?.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  await bus?.close();
  await externalServer?.stop();
});

async function waitFor(
  done: () => boolean | Promise<boolean>,
  explain: () => string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline || child?.exitCode !== null) throw new Error(explain());
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Every message of a stream on one subject, decoded, in stream order. */
async function streamMessages<T>(stream: string, subject: string, decode: (d: Uint8Array) => T): Promise<T[]> {
  const info = await bus.jsm.streams.info(stream);
  const out: T[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await bus.jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (m?.subject === subject) out.push(decode(m.data));
  }
  return out;
}

describe('build worker', () => {
  it('consumes a MIRROR job from the bus and reports its step, logs and result', async () => {
    const client = new RegistryClient();
    const source = { registry: new URL(externalServer.url).host, repository: `${uniqueName('ex')}/web` };
    const image = await pushImage(client, source, '1.0');
    const project = uniqueName('p');
    const deploymentId = uniqueName('dep');
    const serviceId = uniqueName('svc');
    const job = busv1.BuildJob.fromPartial({
      jobId: uniqueName('job'),
      deploymentId,
      environmentId: uniqueName('env'),
      project,
      environmentName: 'staging',
      kind: busv1.BuildKind.BUILD_KIND_MIRROR,
      service: {
        id: serviceId,
        name: 'web',
        kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
        source: {
          $case: 'container',
          value: { image: `${source.registry}/${source.repository}`, tag: '1.0', ports: [] },
        },
      },
      mirrorMode: control.MirrorMode.MIRROR_MODE_SERVICE,
      attempt: 1,
    });
    await bus.publish(bus.subjects.buildJobs(deploymentId), busv1.BuildJob.encode(job).finish(), { msgId: job.jobId });

    // Each message may carry several of the job's events (JobEvent.earlier): all of them, in order.
    const results = async () =>
      (
        await streamMessages(bus.subjects.streams.results, bus.subjects.buildResults(deploymentId), decodeJobEvents)
      ).flat();
    await waitFor(
      async () => (await results()).some((e) => e.event?.$case === 'jobFinished'),
      () => `no JobFinished:\n${output}`,
    );
    const events = (await results()).map((e) => e.event);
    expect(events.map((e) => e?.$case)).toEqual(['stepStarted', 'stepFinished', 'jobFinished']);
    const [started, stepFinished, finished] = events;
    expect(started?.$case === 'stepStarted' && started.value.kind).toBe(control.StepKind.STEP_KIND_MIRROR_IMAGE);
    expect(stepFinished?.$case === 'stepFinished' && stepFinished.value.step?.outcome).toBe(
      control.StepOutcome.STEP_OUTCOME_SUCCESS,
    );
    const mirror = new URL(mirrorServer.url).host;
    expect(finished?.$case === 'jobFinished' && finished.value).toMatchObject({
      succeeded: true,
      image: `${mirror}/${project}/staging/web:1.0@${image.digest}`,
    });

    const logs = await streamMessages(bus.subjects.streams.logs, bus.subjects.logs(deploymentId, serviceId), (d) =>
      busv1.LogRecord.decode(d),
    );
    expect(logs.map((l) => l.line?.message)).toContain(
      `mirroring ${source.registry}/${source.repository}:1.0 to ${mirror}/${project}/staging/web:1.0`,
    );
  });
});
