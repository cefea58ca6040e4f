// The running status and logs on `kubernetes`, through a recording fake kubectl (the one test double the
// project allows): the argv the observer runs, and how it reads what a cluster answers.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { helmReleaseName } from '@stageline/policy';
import { afterAll, describe, expect, it } from 'vitest';
import { KubectlRuntimeObserver } from '../src/adapters/kubernetes/runtime-observer.ts';
import { ProcessRunner } from '../src/adapters/process/command-runner.ts';
import type { ServiceLogLine } from '../src/app/runtime-status.ts';
import type { Release } from '../src/domain/release.ts';

const ENV = '0195f0a0-0000-7000-8000-0000000000aa';
const scratch = mkdtempSync(join(tmpdir(), 'stageline-runtime-k8s-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const web = helmReleaseName(ENV, 'web');
const api = helmReleaseName(ENV, 'api');
const pods = {
  items: [
    {
      metadata: { name: `${web}-aaa`, labels: { 'app.kubernetes.io/instance': web } },
      status: {
        phase: 'Running',
        startTime: '2026-12-04T10:00:00Z',
        containerStatuses: [
          { ready: true, restartCount: 0, state: { running: { startedAt: '2026-12-04T10:00:01Z' } } },
        ],
      },
    },
    {
      metadata: { name: `${web}-bbb`, labels: { 'app.kubernetes.io/instance': web } },
      status: {
        phase: 'Running',
        startTime: '2026-12-04T10:00:00Z',
        containerStatuses: [
          {
            ready: false,
            restartCount: 3,
            state: { waiting: { reason: 'CrashLoopBackOff' } },
            lastState: { terminated: { exitCode: 137, reason: 'OOMKilled' } },
          },
        ],
      },
    },
  ],
};

/** A kubectl that records its argv (one line per call, NUL-separated arguments) and answers like a cluster. */
function fakeKubectl(name: string, script: string): { path: string; calls: () => string[][] } {
  const path = join(scratch, name);
  const record = join(scratch, `${name}.calls`);
  writeFileSync(path, `#!/bin/sh\nprintf '%s\\0' "$@" >> '${record}'\nprintf '\\n' >> '${record}'\n${script}`);
  chmodSync(path, 0o755);
  return {
    path,
    calls: () =>
      readFileSync(record, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => l.split('\0').filter((a) => a !== '')),
  };
}

function release(serviceName: string, extra: Partial<Release> = {}): Release {
  return {
    id: `r-${serviceName}`,
    serviceId: `s-${serviceName}`,
    serviceName,
    environmentId: ENV,
    revision: 1,
    deploymentId: 'd',
    jobId: 'j',
    runtime: 'kubernetes',
    namespace: 'demo-staging',
    kubeContext: 'kind-stageline',
    image: 'i',
    digest: '',
    version: '',
    configHash: '',
    chartPath: '',
    status: 'DEPLOYED',
    message: '',
    hostPorts: [],
    endpoints: [],
    readinessTimeoutSeconds: 300,
    runtimeRevision: 1,
    kind: 'CONTAINER',
    schedule: '',
    createdAt: new Date(),
    updatedAt: new Date(),
    ...extra,
  };
}

describe('kubernetes running status and logs (fake kubectl)', () => {
  it("one `kubectl get pods` per namespace; each release gets the pods of its Helm release's instance label", async () => {
    const pods_json = join(scratch, 'pods.json');
    writeFileSync(pods_json, JSON.stringify(pods));
    const kubectl = fakeKubectl('kubectl-get', `cat '${pods_json}'\n`);
    const observer = new KubectlRuntimeObserver(new ProcessRunner(), kubectl.path);
    const seen = await observer.observe([release('web'), release('api')]);

    expect(kubectl.calls()).toEqual([
      [
        'get',
        'pods',
        '--namespace',
        'demo-staging',
        '--context',
        'kind-stageline',
        '--selector',
        'app.kubernetes.io/instance',
        '--output',
        'json',
      ],
    ]);
    const webSeen = seen.get('r-web');
    expect(webSeen && 'instances' in webSeen ? webSeen.instances : webSeen).toEqual([
      { name: `${web}-aaa`, state: 'running', ready: true, restarts: 0, startedAt: new Date('2026-12-04T10:00:00Z') },
      {
        name: `${web}-bbb`,
        state: 'waiting: CrashLoopBackOff',
        ready: false,
        restarts: 3,
        startedAt: new Date('2026-12-04T10:00:00Z'),
        lastExit: { code: 137, reason: 'OOMKilled' },
      },
    ]);
    // api has no pod: no instance (its status is ERROR), never another release's pods.
    expect(seen.get('r-api')).toEqual({ instances: [] });
    expect(api).not.toBe(web);
  });

  it('a kubectl that fails leaves the releases unobservable, with its message', async () => {
    const kubectl = fakeKubectl(
      'kubectl-refused',
      `echo 'Error from server (Forbidden): pods is forbidden' >&2\nexit 1\n`,
    );
    const seen = await new KubectlRuntimeObserver(new ProcessRunner(), kubectl.path).observe([release('web')]);
    expect(seen.get('r-web')).toEqual({
      error: 'kubectl get pods failed: Error from server (Forbidden): pods is forbidden',
    });
  });

  it('a kubectl logs that fails is UNAVAILABLE with what kubectl said', async () => {
    const kubectl = fakeKubectl(
      'kubectl-logs-refused',
      `echo 'error: You must be logged in to the server' >&2\nexit 1\n`,
    );
    const failed = await new KubectlRuntimeObserver(new ProcessRunner(), kubectl.path)
      .logs(release('web'), { follow: false, tailLines: 10 }, () => undefined, new AbortController().signal)
      .catch((e: unknown) => e);
    expect(failed).toMatchObject({
      code: 'UNAVAILABLE',
      message: 'kubectl logs failed: error: You must be logged in to the server',
    });
  });

  it('`kubectl logs --selector <instance>` with prefix and timestamps: each line with its pod and time', async () => {
    const kubectl = fakeKubectl(
      'kubectl-logs',
      `echo '[pod/${web}-aaa/web] 2026-12-04T10:00:02.123456789Z example: serving /www on port 8080'\n` +
        `echo '[pod/${web}-bbb/web] 2026-12-04T10:00:03.000000000Z out of memory'\n`,
    );
    const lines: ServiceLogLine[] = [];
    await new KubectlRuntimeObserver(new ProcessRunner(), kubectl.path).logs(
      release('web', { kubeContext: '' }),
      { follow: true, tailLines: 50, since: new Date('2026-12-04T09:00:00Z') },
      (l) => lines.push(l),
      new AbortController().signal,
    );
    expect(kubectl.calls()).toEqual([
      [
        'logs',
        '--selector',
        `app.kubernetes.io/instance=${web}`,
        '--namespace',
        'demo-staging',
        '--all-containers',
        '--prefix',
        '--timestamps',
        '--ignore-errors',
        '--max-log-requests',
        '20',
        '--tail',
        '50',
        '--since-time',
        '2026-12-04T09:00:00.000Z',
        '--follow',
      ],
    ]);
    expect(lines).toEqual([
      {
        instance: `${web}-aaa`,
        timestamp: new Date('2026-12-04T10:00:02.123Z'),
        message: 'example: serving /www on port 8080',
        stream: '',
      },
      { instance: `${web}-bbb`, timestamp: new Date('2026-12-04T10:00:03.000Z'), message: 'out of memory', stream: '' },
    ]);
  });
});
