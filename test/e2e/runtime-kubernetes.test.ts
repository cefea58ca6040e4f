// Running status and live logs on `kubernetes`, end to end (issue 15, item 1): control → the deploy
// service's RuntimeService → kubectl. Kubernetes and helm are the one test double the project allows:
// `helm` and `kubectl` here are scripts that record their argv and answer like a cluster whose release
// has two pods, one ready and one crash-looping.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { callUnary } from '@stageline/grpc';
import { control, deploy } from '@stageline/proto';
import { afterAll, describe, expect, it } from 'vitest';
import { EXAMPLE_IMAGE, runStatusName, useStack, watchToEnd } from './stack.ts';

const scratch = mkdtempSync(join(tmpdir(), 'stageline-k8s-runtime-'));
const calls = join(scratch, 'kubectl.calls');
const helmCalls = join(scratch, 'helm.calls');
const pods = join(scratch, 'pods.json');
const logs = join(scratch, 'logs.txt');
const fakeHelm = join(scratch, 'helm');
const fakeKubectl = join(scratch, 'kubectl');
// Fixed scripts of the test's own (no input of anyone's): the worker runs them with a minimal environment.
writeFileSync(
  fakeHelm,
  `#!/bin/sh
printf '%s ' "$@" >> '${helmCalls}'
printf '\\n' >> '${helmCalls}'
case "$1" in
  version) echo v3.15.4 ;;
  history) echo '[{"revision":1,"status":"deployed"}]' ;;
esac
exit 0
`,
);
writeFileSync(
  fakeKubectl,
  `#!/bin/sh
printf '%s ' "$@" >> '${calls}'
printf '\\n' >> '${calls}'
case "$1 $2" in
  "get pods") cat '${pods}' 2>/dev/null || echo '{"items":[]}' ;;
  logs*) cat '${logs}' ;;
  *) echo '{}' ;;
esac
exit 0
`,
);
chmodSync(fakeHelm, 0o755);
chmodSync(fakeKubectl, 0o755);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const CONTEXT = 'e2e-cluster';
const stack = useStack({
  env: { HELM: fakeHelm, KUBECTL: fakeKubectl, STAGELINE_KUBE_CONTEXTS: CONTEXT, DEPLOY_RUNTIME_POLL_MS: '500' },
});

describe('running status and logs on kubernetes (fake kubectl)', () => {
  it("reads the namespace's pods into WARNING with both instances, and streams kubectl logs by instance label", async () => {
    const [repository, tag] = EXAMPLE_IMAGE.split(/:(?=[^:/]+$)/) as [string, string];
    const { environment, pipeline } = await callUnary(
      stack.environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({
        project: 'e2e',
        name: 'k8s-running',
        runtime: 'kubernetes',
        settings: { kubernetesContext: CONTEXT, namespace: 'e2e-running' },
      }),
    );
    const envId = environment!.id;
    const { service: web } = await callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({
        environmentId: envId,
        service: {
          name: 'web',
          kind: control.ServiceKind.SERVICE_KIND_CONTAINER,
          stageId: pipeline!.stages[2]!.id,
          source: { $case: 'container', value: { image: repository, tag, ports: [{ port: 8080 }] } },
        },
      }),
    );
    const { deployment } = await callUnary(stack.deployments, 'deployEnvironment', {
      environmentId: envId,
      requester: 'e2e',
      forceBuild: false,
      versions: {},
    });
    const { final } = await watchToEnd(stack, deployment!.id, 180_000);
    expect(runStatusName(final.status), final.message).toBe('SUCCEEDED');

    // The Helm release helm was asked to install: the instance label the cluster's pods carry.
    const upgrade = readFileSync(helmCalls, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('upgrade --install '));
    const release = upgrade!.split(' ')[2]!;
    expect(release).toMatch(/^web-[0-9a-f]{12}$/);
    const pod = (name: string, status: object) => ({
      metadata: { name, labels: { 'app.kubernetes.io/instance': release } },
      status: { phase: 'Running', startTime: '2026-12-04T10:00:00Z', ...status },
    });
    writeFileSync(
      pods,
      JSON.stringify({
        items: [
          pod(`${release}-a`, { containerStatuses: [{ ready: true, restartCount: 0, state: { running: {} } }] }),
          pod(`${release}-b`, {
            containerStatuses: [
              {
                ready: false,
                restartCount: 6,
                state: { waiting: { reason: 'CrashLoopBackOff' } },
                lastState: { terminated: { exitCode: 2, reason: 'Error' } },
              },
            ],
          }),
        ],
      }),
    );
    writeFileSync(
      logs,
      `[pod/${release}-a/web] 2026-12-04T10:00:02.000000001Z example: serving /www on port 8080\n` +
        `[pod/${release}-b/web] 2026-12-04T10:00:03.000000001Z sh: bad option\n`,
    );

    // Read on the deploy service's own period (DEPLOY_RUNTIME_POLL_MS), not when asked.
    let services: deploy.ServiceRuntime[] = [];
    const deadline = Date.now() + 30_000;
    for (;;) {
      services = (await callUnary(stack.deployments, 'getRuntimeStatus', { environmentId: envId })).services;
      if (services[0]?.instances.length === 2 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(services).toHaveLength(1);
    const seen = services[0]!;
    expect(deploy.runtimeStateToJSON(seen.state), seen.message).toBe('RUNTIME_STATE_WARNING');
    expect(seen.message).toBe('1 of 2 instances ready, 6 restarts; exited with code 2 (Error)');
    expect(seen.runtime).toBe('kubernetes');
    expect(seen.instances.map((i) => [i.name, i.state, i.ready, i.restarts, i.lastExitCode])).toEqual([
      [`${release}-a`, 'running', true, 0, 0],
      [`${release}-b`, 'waiting: CrashLoopBackOff', false, 6, 2],
    ]);
    const asked = readFileSync(calls, 'utf8').split('\n');
    expect(asked).toContain(
      `get pods --namespace e2e-running --context ${CONTEXT} --selector app.kubernetes.io/instance --output json `,
    );

    const lines: deploy.ServiceLogLine[] = [];
    const call = stack.deployments.streamServiceLogs(
      control.StreamServiceLogsRequest.fromPartial({ environmentId: envId, serviceId: web!.id, tailLines: 20 }),
    );
    await new Promise<void>((resolve, reject) => {
      call.on('data', (m: control.StreamServiceLogsResponse) => m.line && lines.push(m.line));
      call.on('end', () => resolve());
      call.on('error', (e: grpc.ServiceError) => reject(e));
    });
    expect(lines.map((l) => [l.instance, l.timestamp?.toISOString(), l.message])).toEqual([
      [`${release}-a`, '2026-12-04T10:00:02.000Z', 'example: serving /www on port 8080'],
      [`${release}-b`, '2026-12-04T10:00:03.000Z', 'sh: bad option'],
    ]);
    expect(readFileSync(calls, 'utf8').split('\n')).toContain(
      `logs --selector app.kubernetes.io/instance=${release} --namespace e2e-running --context ${CONTEXT} ` +
        '--all-containers --prefix --timestamps --ignore-errors --max-log-requests 20 --tail 20 ',
    );
  });
});
