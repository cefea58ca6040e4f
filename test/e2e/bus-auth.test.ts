import { connect } from '@nats-io/transport-node';
import { Bus, type BusIdentity } from '@stageline/bus';
import { callUnary } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { bus as busv1, control } from '@stageline/proto';
import { afterAll, describe, expect, it } from 'vitest';
import { createEnvironment, EXAMPLE_IMAGE, runStatusName, stateName, useStack, watchToEnd } from './stack.ts';

// The secured configuration end to end (issue 19): Stageline's services on a nats-server of their
// own, each as its own user with only the subjects it needs, the streams provisioned apart by the
// provision identity — and what the server refuses.

const stack = useStack({ securedBus: true, env: { WORKER_ACK_WAIT_MS: '5000' } });
const silent = createLogger({ service: 'e2e', level: 'silent' });
const [EXAMPLE_REPO = '', EXAMPLE_TAG = ''] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/);

const opened: Bus[] = [];
afterAll(async () => {
  await Promise.all(opened.map((b) => b.close().catch(() => undefined)));
});

async function as(identity: BusIdentity): Promise<Bus> {
  const bus = await Bus.connect({
    url: stack.securedBus.url,
    prefix: stack.isolated.busPrefix,
    name: `e2e-${identity}`,
    log: silent,
    credentialsFile: stack.securedBus.credentialsFile(identity),
  });
  opened.push(bus);
  return bus;
}

/** What a refused call failed with (the server's words), or "allowed". */
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'allowed';
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? ` (${e.cause.message})` : '';
    return `${e instanceof Error ? e.message : String(e)}${cause}`;
  }
}

const VIOLATION = /Permissions Violation for Publish to/;

/** No message was stored on `subject` (read as the provision identity). */
async function nothingStoredOn(stream: string, subject: string): Promise<boolean> {
  const m = await stack.bus.jsm.streams.getMessage(stream, { last_by_subj: subject }).catch(() => null);
  return m === null;
}

async function containerEnvironment(name: string): Promise<string> {
  const { environment } = await createEnvironment(stack, name);
  const environmentId = environment!.id;
  await callUnary(
    stack.environments,
    'addService',
    control.AddServiceRequest.fromPartial({
      environmentId,
      service: {
        name: 'box',
        kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
        source: { $case: 'container', value: { image: EXAMPLE_REPO, tag: EXAMPLE_TAG, ports: [] } },
        readinessTimeoutSeconds: 60,
      },
    }),
  );
  return environmentId;
}

describe('the authenticated bus', () => {
  let environmentId = '';

  it('deploys end to end with every service as its own bus user, nothing provisioned by them', async () => {
    environmentId = await containerEnvironment('secured');
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      versions: {},
      environmentId,
      requester: 'e2e',
      forceBuild: false,
    });
    const { final } = await watchToEnd(stack, deployment!.id);
    expect(runStatusName(final.status), JSON.stringify(final.services.map((s) => s.message))).toBe('SUCCEEDED');
    expect(final.services.map((s) => [s.name, stateName(s.status)])).toEqual([['box', 'DEPLOYED']]);
    for (const name of ['control', 'planner', 'build', 'deploy'] as const) {
      expect(stack.logs(name)).toContain(`"user":"${name}","provisioned":true,"msg":"bus connected"`);
      expect(stack.logs(name)).not.toMatch(/Permissions Violation|provisioned consumer differs/);
    }
    // The run's logs came through control's own ephemeral consumer on the logs stream.
    const lines: string[] = [];
    const call = stack.deployments.streamLogs({ deploymentId: deployment!.id, serviceId: '', follow: false });
    for await (const m of call as AsyncIterable<control.StreamLogsResponse>) if (m.line) lines.push(m.line.message);
    expect(lines.length).toBeGreaterThan(0);
  });

  it('takes a tool request from the requests user, recorded as bus:requests on behalf of the name sent', async () => {
    const requests = await as('requests');
    const request = busv1.ActionRequested.fromPartial({
      requestId: 'secured-restart-1',
      environmentId,
      action: control.Action.ACTION_RESTART,
      requester: 'release-bot',
    });
    await requests.publish(requests.subjects.requests(environmentId), busv1.ActionRequested.encode(request).finish(), {
      msgId: request.requestId,
    });
    let run: control.Deployment | undefined;
    for (let i = 0; i < 100 && run === undefined; i++) {
      const { deployments } = await callUnary(stack.deployments, 'listDeployments', {
        environmentId,
        pageSize: 10,
        pageToken: '',
      });
      run = deployments.find((d) => d.action === control.Action.ACTION_RESTART);
      if (run === undefined) await new Promise((r) => setTimeout(r, 200));
    }
    expect(run?.requester).toBe('bus:requests on behalf of release-bot');
    expect(runStatusName((await watchToEnd(stack, run!.id)).final.status)).toBe('SUCCEEDED');
  });

  it('refuses an anonymous connection, and a wrong password', async () => {
    const anonymous = await refusal(connect({ servers: stack.securedBus.url, maxReconnectAttempts: 0 }));
    expect(anonymous).toMatch(/Authorization Violation/);
    const wrong = await refusal(
      connect({ servers: stack.securedBus.url, maxReconnectAttempts: 0, user: 'build', pass: 'not-its-password' }),
    );
    expect(wrong).toMatch(/Authorization Violation/);
  });

  it('refuses a build user publishing a request, a deploy job or a forged deploy result', async () => {
    const build = await as('build');
    const s = build.subjects;
    const forged = busv1.JobEvent.encode(
      busv1.JobEvent.fromPartial({
        jobId: 'forged',
        deploymentId: 'forged-run',
        serviceId: 'x',
        event: { $case: 'jobFinished', value: { succeeded: true } },
      }),
    ).finish();
    const cases: Array<[string, string, string]> = [
      ['a request', s.streams.requests, s.requests('forged-environment')],
      ['a deploy job', s.streams.deployJobs, s.deployJobs('forged-run')],
      ['a build job', s.streams.buildJobs, s.buildJobs('forged-run')],
      ['a deploy result', s.streams.results, s.deployResults('forged-run')],
    ];
    for (const [what, stream, subject] of cases) {
      const refused = await refusal(build.publish(subject, forged));
      expect(refused, what).toMatch(VIOLATION);
      expect(refused, what).toContain(subject);
      expect(await nothingStoredOn(stream, subject), what).toBe(true);
    }
    // Its own results it may publish (what a build worker does).
    expect(await refusal(build.publish(s.buildResults('forged-run'), forged))).toBe('allowed');
    // A deploy worker may not publish build jobs or build results either; control no job nor result.
    const deploy = await as('deploy');
    expect(await refusal(deploy.publish(s.buildJobs('forged-run'), forged))).toMatch(VIOLATION);
    expect(await refusal(deploy.publish(s.buildResults('forged-run'), forged))).toMatch(VIOLATION);
    const controlBus = await as('control');
    for (const subject of [s.buildJobs('r'), s.deployJobs('r'), s.buildResults('r'), s.deployResults('r')]) {
      expect(await refusal(controlBus.publish(subject, forged)), subject).toMatch(VIOLATION);
    }
  });

  it('refuses the requests user subscribing to jobs or pulling them', async () => {
    const requests = await as('requests');
    const s = requests.subjects;
    const sub = requests.nc.subscribe(`${s.prefix}.jobs.>`);
    const closed = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r('still open'), 5_000))]);
    expect(String(closed)).toMatch(/Permissions Violation for Subscription to ".*\.jobs\.>"/);
    const pull = await refusal(requests.js.consumers.get(s.streams.deployJobs, s.consumerName('deploy-workers')));
    expect(pull).toMatch(VIOLATION);
    // Nor another identity's replies: pulled jobs go to the worker's own inbox.
    const inbox = requests.nc.subscribe('_INBOX.deploy.>');
    const inboxClosed = await Promise.race([inbox.closed, new Promise((r) => setTimeout(() => r('open'), 5_000))]);
    expect(String(inboxClosed)).toMatch(/Permissions Violation for Subscription/);
  });

  it('refuses any service user deleting, editing or creating a stream, or making a durable consumer', async () => {
    const streams = stack.bus.subjects.streams;
    const before = await stack.bus.jsm.streams.info(streams.buildJobs);
    for (const identity of ['control', 'planner', 'build', 'deploy'] as const) {
      const bus = await as(identity);
      // One at a time: a refusal nobody awaits yet would be an unhandled rejection.
      const tries: Array<[string, () => Promise<unknown>]> = [
        ['delete', () => bus.jsm.streams.delete(streams.requests)],
        ['edit', () => bus.jsm.streams.update(streams.buildJobs, { subjects: [`${bus.prefix}.>`] })],
        ['purge', () => bus.jsm.streams.purge(streams.deployJobs)],
        ['create', () => bus.jsm.streams.add({ name: `${bus.subjects.streamPrefix}_EVIL`, subjects: ['evil.>'] })],
        [
          'durable',
          () => bus.jsm.consumers.add(streams.events, { durable_name: 'evil', ack_policy: 'explicit' as never }),
        ],
      ];
      for (const [what, attempt] of tries) expect(await refusal(attempt()), `${identity} ${what}`).toMatch(VIOLATION);
    }
    const after = await stack.bus.jsm.streams.info(streams.buildJobs);
    expect(after.config.subjects).toEqual(before.config.subjects);
    expect((await stack.bus.jsm.streams.info(streams.requests)).config.name).toBe(streams.requests);
  });
});
