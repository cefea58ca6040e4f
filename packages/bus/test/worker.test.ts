import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { bus as busv1, control } from '@stageline/proto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Bus, type JobContext, jobEventsOf, publishCancel, startWorker, type Worker } from '../src/index.ts';
import { connectBus, deletePrefixStreams, eventually, NATS_URL, randomId, randomPrefix, silentLog } from './support.ts';

const prefix = randomPrefix();
let bus: Bus;
const workers: Worker[] = [];

beforeAll(async () => {
  bus = await connectBus(prefix, 'worker-test');
  await bus.ensureStreams();
});

afterEach(async () => {
  // One worker at a time on the shared durable, even when a test failed half-way.
  await Promise.all(workers.splice(0).map((w) => w.stop()));
});

afterAll(async () => {
  await bus?.close();
  await deletePrefixStreams(prefix);
});

function job(deploymentId: string, jobId: string): Uint8Array {
  return busv1.BuildJob.encode(
    busv1.BuildJob.fromPartial({ jobId, deploymentId, service: { id: 'svc1', name: 'web' }, attempt: 1 }),
  ).finish();
}

/** Every JobEvent message published for one run, decoded, in stream order. */
async function messages(deploymentId: string): Promise<busv1.JobEvent[]> {
  const stream = bus.subjects.streams.results;
  const info = await bus.jsm.streams.info(stream);
  const out: busv1.JobEvent[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await bus.jsm.streams.getMessage(stream, { seq }).catch(() => null);
    if (m?.subject === bus.subjects.buildResults(deploymentId)) out.push(busv1.JobEvent.decode(m.data));
  }
  return out;
}

/** Every JobEvent reported for one run, in order: the events each message carries (`earlier` first). */
async function events(deploymentId: string): Promise<busv1.JobEvent[]> {
  return (await messages(deploymentId)).flatMap(jobEventsOf);
}

async function start(handle: (j: busv1.BuildJob, ctx: JobContext) => Promise<busv1.JobFinished>): Promise<Worker> {
  const w = await startWorker({
    bus,
    role: 'build',
    log: (await import('@stageline/log')).createLogger({ service: 'worker-test', level: 'silent' }),
    slots: 3,
    // A work-queue stream takes one unfiltered consumer: every test shares it, one worker at a time.
    durable: 'build-workers',
    decode: (data) => busv1.BuildJob.decode(data),
    identify: (j) => ({
      jobId: j.jobId,
      deploymentId: j.deploymentId,
      serviceId: j.service?.id ?? '',
      attempt: j.attempt,
    }),
    handle,
  });
  workers.push(w);
  return w;
}

describe('worker framework', () => {
  it('reports steps and the result, and answers a redelivered finished job without redoing it', async () => {
    const deploymentId = randomId('run').replace(/[^A-Za-z0-9_-]/g, '');
    let calls = 0;
    await start(async (j, ctx) => {
      calls++;
      await ctx.stepStarted(control.StepKind.STEP_KIND_MIRROR_IMAGE, 'copying');
      ctx.output('copied 1 layer', control.StepKind.STEP_KIND_MIRROR_IMAGE);
      await ctx.stepFinished({
        kind: control.StepKind.STEP_KIND_MIRROR_IMAGE,
        startedAt: new Date(),
        finishedAt: new Date(),
        outcome: control.StepOutcome.STEP_OUTCOME_SUCCESS,
        message: 'done',
      });
      return busv1.JobFinished.fromPartial({ succeeded: true, image: `mirror/${j.service?.name}@sha256:1` });
    });
    await bus.publish(bus.subjects.buildJobs(deploymentId), job(deploymentId, 'job-1'), { msgId: 'job-1' });
    await eventually(async () => (await events(deploymentId)).length >= 3, 'three job events');
    // The same job again (e.g. the ack was lost): the handler is not called again, the result is repeated.
    await bus.publish(bus.subjects.buildJobs(deploymentId), job(deploymentId, 'job-1'), { msgId: 'job-1-again' });
    await eventually(async () => (await events(deploymentId)).length >= 4, 'the result reported again');
    const all = await events(deploymentId);
    expect(all.map((e) => e.event?.$case)).toEqual(['stepStarted', 'stepFinished', 'jobFinished', 'jobFinished']);
    expect(all[2]?.event).toMatchObject({
      $case: 'jobFinished',
      value: { succeeded: true, image: 'mirror/web@sha256:1' },
    });
    expect(calls).toBe(1);
    expect(all[3]?.event).toEqual(all[2]?.event);
  });

  it('sends a 0 ms job’s step start, step end and result as one message, the same ordered events', async () => {
    const deploymentId = randomId('run').replace(/[^A-Za-z0-9_-]/g, '');
    const kind = control.StepKind.STEP_KIND_MIRROR_IMAGE;
    await start(async (_j, ctx) => {
      await ctx.stepStarted(kind, 'quick');
      await ctx.stepFinished({ kind, outcome: control.StepOutcome.STEP_OUTCOME_SUCCESS, message: 'done' });
      return busv1.JobFinished.fromPartial({ succeeded: true, image: 'quick' });
    });
    await bus.publish(bus.subjects.buildJobs(deploymentId), job(deploymentId, 'job-q'), { msgId: 'job-q' });
    await eventually(
      async () => (await events(deploymentId)).some((e) => e.event?.$case === 'jobFinished'),
      'the result',
    );
    const sent = await messages(deploymentId);
    // One message: its own event the result (what a reader that ignores `earlier` gets), the steps before.
    expect(sent).toHaveLength(1);
    expect(sent[0]?.event).toMatchObject({ $case: 'jobFinished', value: { image: 'quick' } });
    const all = await events(deploymentId);
    expect(all.map((e) => [e.event?.$case, e.sequence, e.jobId])).toEqual([
      ['stepStarted', 1_000_001, 'job-q'],
      ['stepFinished', 1_000_002, 'job-q'],
      ['jobFinished', 1_000_003, 'job-q'],
    ]);
  });

  it('turns a thrown error into a failed result, and a cancel request into an aborted signal', async () => {
    const deploymentId = randomId('run').replace(/[^A-Za-z0-9_-]/g, '');
    let markStarted = () => {};
    const started = new Promise<void>((resolve) => {
      markStarted = resolve;
    });
    await start(async (j, ctx) => {
      if (j.jobId === 'boom') throw new Error('Dockerfile not found');
      markStarted();
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
      return busv1.JobFinished.fromPartial({
        succeeded: false,
        state: control.ServiceState.SERVICE_STATE_CANCELED,
        message: 'canceled',
      });
    });
    await bus.publish(bus.subjects.buildJobs(deploymentId), job(deploymentId, 'boom'), {
      msgId: `${deploymentId}-boom`,
    });
    await bus.publish(bus.subjects.buildJobs(deploymentId), job(deploymentId, 'long'), {
      msgId: `${deploymentId}-long`,
    });
    await started;
    publishCancel(bus, deploymentId);
    await eventually(
      async () => (await events(deploymentId)).filter((e) => e.event?.$case === 'jobFinished').length >= 2,
      'both jobs finished',
    );
    const finished = (await events(deploymentId)).flatMap((e) =>
      e.event?.$case === 'jobFinished' ? [{ job: e.jobId, ...e.event.value }] : [],
    );
    expect(finished.find((f) => f.job === 'boom')).toMatchObject({
      succeeded: false,
      state: control.ServiceState.SERVICE_STATE_BUILD_ERROR,
      message: 'Dockerfile not found',
    });
    expect(finished.find((f) => f.job === 'long')).toMatchObject({
      state: control.ServiceState.SERVICE_STATE_CANCELED,
    });
  });

  it('dead-letters a job it cannot decode', async () => {
    const deploymentId = randomId('run').replace(/[^A-Za-z0-9_-]/g, '');
    await start(async () => busv1.JobFinished.fromPartial({ succeeded: true }));
    const subject = bus.subjects.buildJobs(deploymentId);
    await bus.publish(subject, new Uint8Array([0xff, 0xff, 0xff]), { msgId: `${deploymentId}-garbage` });
    await eventually(async () => {
      const info = await bus.jsm.streams.info(bus.subjects.streams.dlq);
      return info.state.messages >= 1;
    }, 'the job dead-lettered');
    const info = await bus.jsm.streams.info(bus.subjects.streams.dlq);
    const letter = (await bus.jsm.streams.getMessage(bus.subjects.streams.dlq, { seq: info.state.last_seq }))!;
    expect(letter.subject).toBe(bus.subjects.dlq(subject));
    expect(letter.header.get('Stageline-Dlq-Reason')).toMatch(/undecodable build job/);
  });

  it("moves a dead worker's job on to another worker, with the default ack wait", async () => {
    const deploymentId = randomId('run').replace(/[^A-Za-z0-9_-]/g, '');
    // The worker that dies: its own connection, closed under it without a word (as kill -9 would).
    const doomed = await connectBus(prefix, 'doomed-worker');
    let markStarted = () => {};
    const started = new Promise<void>((resolve) => {
      markStarted = resolve;
    });
    const dying = await startWorker({
      bus: doomed,
      role: 'build',
      log: silentLog,
      slots: 1,
      durable: 'build-workers',
      decode: (data) => busv1.BuildJob.decode(data),
      identify: (j) => ({ jobId: j.jobId, deploymentId: j.deploymentId, serviceId: 'svc1', attempt: 1 }),
      handle: async (_j, ctx) => {
        markStarted();
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
        return busv1.JobFinished.fromPartial({ succeeded: false, message: 'stopped' });
      },
    });
    try {
      await bus.publish(bus.subjects.buildJobs(deploymentId), job(deploymentId, 'orphan'), {
        msgId: `${deploymentId}-orphan`,
      });
      await started;
      await doomed.nc.close();
      await start(async () => busv1.JobFinished.fromPartial({ succeeded: true, image: 'mirror/web@sha256:2' }));
      // A deadline for progress: with the old 60 s ack wait this times out; heartbeats-only keeps 6 s.
      await eventually(
        async () => (await events(deploymentId)).some((e) => e.event?.$case === 'jobFinished'),
        'the orphaned job finished by another worker',
        30_000,
      );
      const finished = (await events(deploymentId)).filter((e) => e.event?.$case === 'jobFinished');
      expect(finished).toHaveLength(1);
      expect(finished[0]?.event).toMatchObject({ value: { succeeded: true, image: 'mirror/web@sha256:2' } });
    } finally {
      await dying.stop().catch(() => undefined);
    }
  });

  it('never takes a slow job from a worker that lives: its heartbeats keep it', async () => {
    const deploymentId = randomId('run').replace(/[^A-Za-z0-9_-]/g, '');
    let calls = 0;
    const w = await startWorker({
      bus,
      role: 'build',
      log: silentLog,
      slots: 2,
      durable: 'build-workers',
      // Short, so that the job outlasts several ack waits.
      ackWaitMs: 1_500,
      decode: (data) => busv1.BuildJob.decode(data),
      identify: (j) => ({ jobId: j.jobId, deploymentId: j.deploymentId, serviceId: 'svc1', attempt: 1 }),
      handle: async () => {
        calls++;
        await new Promise((resolve) => setTimeout(resolve, 5_000));
        return busv1.JobFinished.fromPartial({ succeeded: true });
      },
    });
    workers.push(w);
    await bus.publish(bus.subjects.buildJobs(deploymentId), job(deploymentId, 'slow'), {
      msgId: `${deploymentId}-slow`,
    });
    await eventually(
      async () => (await events(deploymentId)).some((e) => e.event?.$case === 'jobFinished'),
      'the slow job finished',
      30_000,
    );
    expect(calls).toBe(1);
  });

  it('drains on stop: takes no new job, lets the one it holds finish within the grace', async () => {
    const deploymentId = randomId('run').replace(/[^A-Za-z0-9_-]/g, '');
    let markStarted = () => {};
    const started = new Promise<void>((resolve) => {
      markStarted = resolve;
    });
    const handled: string[] = [];
    const w = await startWorker({
      bus,
      role: 'build',
      log: silentLog,
      slots: 1,
      durable: 'build-workers',
      drainGraceMs: 20_000,
      decode: (data) => busv1.BuildJob.decode(data),
      identify: (j) => ({ jobId: j.jobId, deploymentId: j.deploymentId, serviceId: 'svc1', attempt: 1 }),
      handle: async (j, ctx) => {
        handled.push(j.jobId);
        markStarted();
        // Finishes unless its worker gives up on it first.
        const aborted = new Promise<boolean>((resolve) => ctx.signal.addEventListener('abort', () => resolve(true)));
        const done = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1_500));
        if (await Promise.race([aborted, done])) {
          return busv1.JobFinished.fromPartial({ succeeded: false, message: 'handed back' });
        }
        return busv1.JobFinished.fromPartial({ succeeded: true, image: 'mirror/web@sha256:3' });
      },
    });
    await bus.publish(bus.subjects.buildJobs(deploymentId), job(deploymentId, 'held'), {
      msgId: `${deploymentId}-held`,
    });
    await started;
    const stopped = w.stop();
    // Published while draining: not taken by this worker.
    await bus.publish(bus.subjects.buildJobs(deploymentId), job(deploymentId, 'next'), {
      msgId: `${deploymentId}-next`,
    });
    await stopped;
    const finished = (await events(deploymentId)).filter((e) => e.event?.$case === 'jobFinished');
    expect(finished.map((e) => e.jobId)).toEqual(['held']);
    expect(finished[0]?.event).toMatchObject({ value: { succeeded: true, image: 'mirror/web@sha256:3' } });
    expect(handled).toEqual(['held']);
    // The job published during the drain waits for the next worker.
    await start(async () => busv1.JobFinished.fromPartial({ succeeded: true }));
    await eventually(
      async () => (await events(deploymentId)).some((e) => e.jobId === 'next' && e.event?.$case === 'jobFinished'),
      'the next job taken by the next worker',
      30_000,
    );
  });

  it('keeps one live copy: a worker frozen past its ack wait, then thawed, stops and reports nothing', async () => {
    const deploymentId = randomId('run').replace(/[^A-Za-z0-9_-]/g, '');
    const script = fileURLToPath(new URL('./fixtures/slow-worker.ts', import.meta.url));
    const frozen = spawn(process.execPath, [script], {
      env: { ...process.env, NATS_URL, BUS_PREFIX: prefix, SLOW_MS: '4000' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise((resolve) => frozen.once('exit', resolve));
    try {
      await new Promise<void>((resolve) => frozen.stdout?.on('data', (c: Buffer) => c.includes('ready') && resolve()));
      await bus.publish(bus.subjects.buildJobs(deploymentId), job(deploymentId, 'contested'), {
        msgId: `${deploymentId}-contested`,
      });
      await eventually(async () => (await events(deploymentId)).length >= 1, 'the slow worker started the job');
      // Frozen: no heartbeat; after the ack wait (6 s) the job goes to the worker started now.
      frozen.kill('SIGSTOP');
      await start(async () => busv1.JobFinished.fromPartial({ succeeded: true, image: 'live' }));
      await eventually(
        async () => (await events(deploymentId)).some((e) => e.event?.$case === 'jobFinished'),
        'the live copy finished the job',
        30_000,
      );
      // Thawed: its job's 4 s are long over, so without the lease it would report its step and result now.
      frozen.kill('SIGCONT');
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      const all = await events(deploymentId);
      const finished = all.filter((e) => e.event?.$case === 'jobFinished');
      expect(finished).toHaveLength(1);
      expect(finished[0]?.event).toMatchObject({ value: { image: 'live' } });
      // The frozen copy reported its step (its end perhaps too, right after the thaw: step reports are
      // not fenced) but no result, and numbered below every event of the live copy, so the planner
      // drops whatever the stale copy sent after the live one reported.
      const stale = all.filter((e) => e.sequence < 2_000_000);
      expect(stale.map((e) => e.event?.$case)).toEqual(
        stale.length === 1 ? ['stepStarted'] : ['stepStarted', 'stepFinished'],
      );
      const live = all.filter((e) => e.sequence >= 2_000_000);
      expect(live.length).toBeGreaterThan(0);
    } finally {
      frozen.kill('SIGCONT');
      frozen.kill('SIGKILL');
      await exited;
    }
  });
});

describe('worker framework after the NATS store was lost', () => {
  it('a job published again into the rebuilt stream takes the lease, though its sequence number is the old copy’s', async () => {
    // A prefix of its own: the job is message 1 of its stream before and after the rebuild.
    const own = randomPrefix();
    const b = await connectBus(own, 'worker-rebuild-test');
    const { provisionBus } = await import('../src/index.ts');
    await provisionBus(b);
    const deploymentId = randomId('run').replace(/[^A-Za-z0-9_-]/g, '');
    const copies: { signal: AbortSignal; sequence: number }[] = [];
    let releaseFirst = () => {};
    const firstMayEnd = new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
    const w = await startWorker({
      bus: b,
      role: 'build',
      log: (await import('@stageline/log')).createLogger({ service: 'worker-test', level: 'silent' }),
      slots: 3,
      ackWaitMs: 3_000,
      durable: 'build-workers',
      decode: (data) => busv1.BuildJob.decode(data),
      identify: (j) => ({ jobId: j.jobId, deploymentId: j.deploymentId, serviceId: 'svc1', attempt: 1 }),
      handle: async (_j, ctx) => {
        copies.push({ signal: ctx.signal, sequence: copies.length + 1 });
        if (copies.length === 1) {
          // The old copy works on until its lease is gone (or the test lets it end).
          await Promise.race([firstMayEnd, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve))]);
          ctx.signal.throwIfAborted();
        }
        return busv1.JobFinished.fromPartial({ succeeded: true, message: `copy ${copies.length}` });
      },
    });
    try {
      const first = await b.publish(b.subjects.buildJobs(deploymentId), job(deploymentId, 'job-r'), { msgId: 'row-1' });
      await eventually(() => copies.length === 1, 'the first copy running');
      // The store is lost: every stream and bucket of the prefix goes, provisioning makes them again.
      await deletePrefixStreams(own);
      for await (const name of b.jsm.streams.names()) {
        if (name.startsWith(`KV_${b.subjects.streamPrefix}_`)) await b.jsm.streams.delete(name);
      }
      await provisionBus(b);
      // The planner dispatches the job again (another outbox row, so another Nats-Msg-Id).
      const again = await b.publish(b.subjects.buildJobs(deploymentId), job(deploymentId, 'job-r'), {
        msgId: 'row-2',
      });
      expect(again.seq).toBe(first.seq);
      await eventually(() => copies.length === 2, 'the new copy running', 30_000);
      // The old copy finds its lease taken at its next beat and stops, recording nothing.
      await eventually(() => copies[0]?.signal.aborted, 'the old copy stopped', 15_000);
      releaseFirst();
      const results = async () => {
        const stream = b.subjects.streams.results;
        const info = await b.jsm.streams.info(stream);
        const out: string[] = [];
        for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
          const m = await b.jsm.streams.getMessage(stream, { seq }).catch(() => null);
          const event = m ? busv1.JobEvent.decode(m.data).event : undefined;
          if (event?.$case === 'jobFinished') out.push(event.value.message);
        }
        return out;
      };
      await eventually(async () => (await results()).length > 0, 'the new copy’s result');
      // Time for a second result, were the old copy still live: there is none.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(await results()).toEqual(['copy 2']);
    } finally {
      releaseFirst();
      await w.stop();
      for await (const name of b.jsm.streams.names()) {
        if (name.startsWith(`KV_${b.subjects.streamPrefix}_`)) await b.jsm.streams.delete(name);
      }
      await b.close();
      await deletePrefixStreams(own);
    }
  });

  // Last in the file: its job is never acknowledged (the stream goes with the file's prefix).
  it("a lease check the bus does not answer is a retryable UNAVAILABLE, never a lost lease or the job's failure", async () => {
    const deploymentId = randomId('run').replace(/[^A-Za-z0-9_-]/g, '');
    const own = await connectBus(prefix, 'worker-fence');
    let seen: unknown;
    const w = await startWorker({
      bus: own,
      role: 'build',
      log: (await import('@stageline/log')).createLogger({ service: 'worker-test', level: 'silent' }),
      slots: 1,
      durable: 'build-workers',
      decode: (data) => busv1.BuildJob.decode(data),
      identify: (j) => ({ jobId: j.jobId, deploymentId: j.deploymentId, serviceId: 'svc1', attempt: 1 }),
      handle: async (_j, ctx) => {
        // The worker's server goes away mid-job (a NATS node cut off): the fence cannot ask the bucket.
        await own.nc.close();
        try {
          await ctx.fence();
        } catch (e) {
          seen = e;
        }
        throw seen ?? new Error('the fence answered without a bus');
      },
    });
    try {
      await bus.publish(bus.subjects.buildJobs(deploymentId), job(deploymentId, 'job-fence'), { msgId: 'job-fence' });
      await eventually(() => seen !== undefined, 'the fence to fail');
      const { DomainError } = await import('@stageline/errors');
      expect(seen).toBeInstanceOf(DomainError);
      expect((seen as InstanceType<typeof DomainError>).code).toBe('UNAVAILABLE');
      expect((seen as InstanceType<typeof DomainError>).retryable).toBe(true);
    } finally {
      await w.stop().catch(() => undefined);
    }
  });
});
