import * as grpc from '@grpc/grpc-js';
import { callUnary, fieldOf, isServiceError } from '@stageline/grpc';
import { bus as busv1, control } from '@stageline/proto';
import { describe, expect, it } from 'vitest';
import { createEnvironment, runStatusName, stageStatusName, stateName, useStack, watchToEnd } from './stack.ts';

// Requests and their runs through control and the planner, with runs that need no worker:
// actions whose every service is skipped, requests from the bus, refusals.

const stack = useStack({ services: ['control', 'planner'] });
const { ServiceKind } = control;

async function envWithServices(name: string) {
  const { environment } = await createEnvironment(stack, name);
  const envId = environment!.id;
  const add = (service: control.Service) =>
    callUnary(
      stack.environments,
      'addService',
      control.AddServiceRequest.fromPartial({ environmentId: envId, service }),
    );
  const web = await add(
    control.Service.fromPartial({
      name: 'web',
      kind: ServiceKind.SERVICE_KIND_CONTAINER,
      source: { $case: 'container', value: { image: 'nginx', tag: '1' } },
    }),
  );
  const db = await add(
    control.Service.fromPartial({
      name: 'db',
      kind: ServiceKind.SERVICE_KIND_DATABASE,
      source: { $case: 'database', value: { engine: control.DatabaseEngine.DATABASE_ENGINE_POSTGRESQL } },
    }),
  );
  return { envId, web: web.service!, db: db.service! };
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => (isServiceError(e) ? { code: grpc.status[e.code], field: fieldOf(e), details: e.details } : e),
  );

describe('requests and runs', () => {
  it('STOP of a never-deployed environment skips every service and succeeds', async () => {
    const { envId } = await envWithServices('stop-fresh');
    const { deployment } = await callUnary(stack.deployments, 'stopEnvironment', {
      environmentId: envId,
      requester: 'alice',
      forceBuild: false,
    });
    const { final } = await watchToEnd(stack, deployment!.id);
    expect(runStatusName(final.status)).toBe('SUCCEEDED');
    expect(final.services.map((s) => [s.name, stateName(s.status), s.message])).toEqual([
      ['db', 'SKIPPED', 'never deployed'],
      ['web', 'SKIPPED', 'never deployed'],
    ]);
    expect(final.stages.map((s) => stageStatusName(s.status))).toEqual(['SKIPPED', 'SKIPPED', 'SKIPPED', 'SKIPPED']);
    // The requester is who control authenticated (the admin token); the name sent is kept as "on behalf of".
    expect(final.requester).toMatch(/^token:bootstrap-admin \([^)]+\) on behalf of alice$/);
  });

  it('an ActionRequested published twice with the same id becomes one run; garbage is dead-lettered', async () => {
    const { envId } = await envWithServices('from-bus');
    const request = busv1.ActionRequested.fromPartial({
      requestId: 'tool-request-1',
      environmentId: envId,
      action: control.Action.ACTION_RESTART,
      requester: 'release-bot',
    });
    const subject = stack.bus.subjects.requests(envId);
    const bytes = busv1.ActionRequested.encode(request).finish();
    await stack.bus.publish(subject, bytes, { msgId: 'tool-request-1' });
    // Past the stream's duplicate window a tool may publish it again: still one run.
    await stack.bus.publish(subject, bytes, { msgId: 'tool-request-1-retry' });
    await stack.bus.publish(subject, new Uint8Array([0xde, 0xad, 0xbe, 0xef]), { msgId: 'garbage-1' });

    let runs: control.Deployment[] = [];
    for (let i = 0; i < 100 && runs.length === 0; i++) {
      runs = (
        await callUnary(stack.deployments, 'listDeployments', { environmentId: envId, pageSize: 10, pageToken: '' })
      ).deployments;
      if (runs.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    const { final } = await watchToEnd(stack, runs[0]!.id);
    // From the bus the requester is the bus identity (anonymous here); the name sent is "on behalf of".
    expect(final.requester).toBe('bus:anonymous on behalf of release-bot');
    expect(final.services.every((s) => s.message === 'never deployed')).toBe(true);

    const dlq = stack.bus.subjects.streams.dlq;
    let reason: string | undefined;
    for (let i = 0; i < 100 && reason === undefined; i++) {
      const info = await stack.bus.jsm.streams.info(dlq);
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
        const m = await stack.bus.jsm.streams.getMessage(dlq, { seq }).catch(() => null);
        if (m?.subject === stack.bus.subjects.dlq(subject)) reason = m.header.get('Stageline-Dlq-Reason');
      }
      if (reason === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    expect(reason).toMatch(/undecodable ActionRequested/);
    // Both publishes of the same request were consumed: still exactly one run.
    const after = await callUnary(stack.deployments, 'listDeployments', {
      environmentId: envId,
      pageSize: 10,
      pageToken: '',
    });
    expect(after.deployments).toHaveLength(1);
  });

  it('refuses what DeploymentService documents, naming the field', async () => {
    const { envId, web } = await envWithServices('refusals');
    const { deployment: stop } = await callUnary(stack.deployments, 'stopEnvironment', {
      environmentId: envId,
      requester: '',
      forceBuild: false,
    });
    const { final } = await watchToEnd(stack, stop!.id);
    expect(runStatusName(final.status)).toBe('SUCCEEDED');

    expect(
      await failure(
        callUnary(stack.deployments, 'rollbackEnvironment', {
          environmentId: envId,
          toDeploymentId: '0190c5f0-0000-7000-8000-000000000000',
          requester: '',
        }),
      ),
    ).toMatchObject({ code: 'NOT_FOUND', field: 'to_deployment_id' });
    expect(
      await failure(
        callUnary(stack.deployments, 'deployService', {
          serviceIds: [],
          environmentId: envId,
          serviceId: web.id,
          version: 'tag:bad tag',
          requester: '',
          forceBuild: false,
        }),
      ),
    ).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'version' });
    expect(
      await failure(
        callUnary(stack.deployments, 'deployService', {
          serviceIds: [],
          environmentId: envId,
          serviceId: '0190c5f0-0000-7000-8000-000000000000',
          version: '',
          requester: '',
          forceBuild: false,
        }),
      ),
    ).toMatchObject({ code: 'NOT_FOUND', field: 'service_ids' });
    expect(
      await failure(
        callUnary(stack.deployments, 'deployEnvironment', {
          versions: {},
          environmentId: '0190c5f0-0000-7000-8000-000000000000',
          requester: '',
          forceBuild: false,
        }),
      ),
    ).toMatchObject({ code: 'NOT_FOUND', field: 'environment_id' });

    // DELETE of a never-deployed environment: nothing to remove, the environment is gone after it.
    const { deployment: del } = await callUnary(stack.deployments, 'deleteEnvironment', {
      environmentId: envId,
      requester: '',
      forceBuild: false,
    });
    expect(runStatusName((await watchToEnd(stack, del!.id)).final.status)).toBe('SUCCEEDED');
    let status = control.EnvironmentStatus.ENVIRONMENT_STATUS_UNSPECIFIED as control.EnvironmentStatus;
    for (let i = 0; i < 100 && status !== control.EnvironmentStatus.ENVIRONMENT_STATUS_DELETED; i++) {
      status = (await callUnary(stack.environments, 'getEnvironment', { environmentId: envId })).environment!.status;
      if (status !== control.EnvironmentStatus.ENVIRONMENT_STATUS_DELETED) await new Promise((r) => setTimeout(r, 100));
    }
    expect(control.environmentStatusToJSON(status)).toBe('ENVIRONMENT_STATUS_DELETED');
    expect(
      await failure(
        callUnary(stack.deployments, 'deployEnvironment', {
          versions: {},
          environmentId: envId,
          requester: '',
          forceBuild: false,
        }),
      ),
    ).toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
  });

  it('plans without running anything', async () => {
    const { envId } = await envWithServices('planning');
    const { deployment } = await callUnary(
      stack.deployments,
      'planDeployment',
      control.PlanDeploymentRequest.fromPartial({ environmentId: envId, action: control.Action.ACTION_DEPLOY }),
    );
    expect(runStatusName(deployment!.status)).toBe('PLANNED');
    expect(deployment!.services.map((s) => [s.name, s.steps.map((st) => control.stepKindToJSON(st.kind))])).toEqual([
      ['db', ['STEP_KIND_MIRROR_IMAGE', 'STEP_KIND_DEPLOYMENT']],
      ['web', ['STEP_KIND_MIRROR_IMAGE', 'STEP_KIND_DEPLOYMENT']],
    ]);
    // No build service runs here: the plan says it could not predict, and is a plan all the same.
    for (const s of deployment!.services) {
      expect(s.steps[0]!.message).toMatch(/^no cache prediction \(build: /);
    }
    const list = await callUnary(stack.deployments, 'listDeployments', {
      environmentId: envId,
      pageSize: 10,
      pageToken: '',
    });
    expect(list.deployments).toEqual([]);
  });
});
