import * as grpc from '@grpc/grpc-js';
import { callUnary, fieldOf, isServiceError } from '@stageline/grpc';
import { bus, control } from '@stageline/proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { LIMITS } from '../src/domain/limits.ts';
import { environmentEvents, useControl } from './harness.ts';

// Sizes stay under the bus's max_payload (issue 21): what a message would carry over the limits is
// refused with INVALID_ARGUMENT naming the field and the limit, and what is allowed reaches the bus.

// The dev stack's source policy: the example image's registry is allowed.
const ctl = useControl({ sourceAllow: '127.0.0.1:5001' });
const { ServiceKind } = control;
const MAX_PAYLOAD = 1024 * 1024;

const container = (name: string, envVars: control.EnvVar[] = [], ports: control.Port[] = []) =>
  control.Service.fromPartial({
    name,
    kind: ServiceKind.SERVICE_KIND_CONTAINER,
    source: { $case: 'container', value: { image: '127.0.0.1:5001/examples/busybox', tag: '1.36', ports } },
    envVars,
  });

/** `count` env vars of `bytes` each (key included). */
function envVars(count: number, bytes: number, secret = false): control.EnvVar[] {
  return Array.from({ length: count }, (_, i) => {
    const key = `VAR_${String(i).padStart(3, '0')}`;
    return { key, value: 'x'.repeat(bytes - key.length), secret };
  });
}

async function refusal(call: Promise<unknown>): Promise<{ code: string; field: string | undefined; message: string }> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isServiceError(error), 'the call should have failed').toBe(true);
  const e = error as grpc.ServiceError;
  return { code: grpc.status[e.code], field: fieldOf(e), message: e.details };
}

let envId = '';
const addService = (service: control.Service) =>
  callUnary(ctl.environments, 'addService', control.AddServiceRequest.fromPartial({ environmentId: envId, service }));

beforeAll(async () => {
  const created = await callUnary(
    ctl.environments,
    'createEnvironment',
    control.CreateEnvironmentRequest.fromPartial({ project: 'limits', name: 'sizes' }),
  );
  envId = created.environment!.id;
});

describe('sizes under the bus limit', () => {
  it('refuses the service of the finding: 40 env vars of 32 KiB (a 1.31 MB event)', async () => {
    const finding = container('big', envVars(40, 32 * 1024 - 1));
    expect(control.Service.encode(finding).finish().length).toBeGreaterThan(MAX_PAYLOAD);
    const r = await refusal(addService(finding));
    expect(r).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'service.env_vars' });
    expect(r.message).toContain('the limit is 128 KiB');
  });

  it('refuses more env vars, ports or exec arguments than the limits, naming the field', async () => {
    expect(await refusal(addService(container('many', envVars(LIMITS.envVarsPerService + 1, 10))))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'service.env_vars',
    });
    const ports = Array.from({ length: LIMITS.portsPerService + 1 }, (_, i) => ({ port: 8000 + i, public: false }));
    const r = await refusal(addService(container('ports', [], ports)));
    expect(r).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'service.container.ports' });
    expect(r.message).toContain(`the limit is ${LIMITS.portsPerService}`);
  });

  it('counts secrets kept on update: a secret sent back empty still weighs its stored value', async () => {
    const { service } = await addService(container('secrets', envVars(3, 32 * 1024, true)));
    // 3 × 32 KiB stored; adding 2 × 32 KiB in plain values would exceed 128 KiB once the secrets are counted.
    const update = {
      ...service!,
      envVars: [...service!.envVars, ...envVars(5, 32 * 1024).slice(3)],
    };
    const r = await refusal(
      callUnary(
        ctl.environments,
        'updateService',
        control.UpdateServiceRequest.fromPartial({ environmentId: envId, service: update }),
      ),
    );
    expect(r).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'service.env_vars' });
    await callUnary(ctl.environments, 'removeService', { environmentId: envId, serviceId: service!.id });
  });

  it('refuses an environment over its total size, and over its number of stages', async () => {
    const created = await callUnary(
      ctl.environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({ project: 'limits', name: 'total' }),
    );
    const id = created.environment!.id;
    const add = (service: control.Service) =>
      callUnary(ctl.environments, 'addService', control.AddServiceRequest.fromPartial({ environmentId: id, service }));
    // Services of 127 KiB of env vars each pass one by one...
    for (let i = 0; i < 4; i++) await add(container(`s${i}`, envVars(32, 4000)));
    // ...until the environment as a whole would not fit in its limit.
    const r = await refusal(add(container('s4', envVars(32, 4000))));
    expect(r).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'service' });
    expect(r.message).toContain('the encoded size of the whole environment');
    expect(r.message).toContain('the limit is 512 KiB');

    const stages = created.pipeline!.stages.length;
    for (let i = stages; i < LIMITS.stagesPerEnvironment; i++) {
      await callUnary(
        ctl.pipelines,
        'createStage',
        control.CreateStageRequest.fromPartial({ environmentId: id, name: `stage ${i}` }),
      );
    }
    const s = await refusal(
      callUnary(
        ctl.pipelines,
        'createStage',
        control.CreateStageRequest.fromPartial({ environmentId: id, name: 'one too many' }),
      ),
    );
    expect(s).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'name' });
    expect(s.message).toContain(`the limit is ${LIMITS.stagesPerEnvironment}`);

    // What was accepted reached the bus, every event under max_payload; the refusals emitted nothing.
    const events = await environmentEvents(ctl.env.natsUrl, ctl.env.busPrefix, id, 1 + 4 + 28);
    expect(events.map((e) => e.event?.$case).filter((c) => c === 'serviceAdded')).toHaveLength(4);
    const largest = Math.max(...events.map((e) => bus.EnvironmentEvent.encode(e).finish().length));
    expect(largest).toBeLessThan(MAX_PAYLOAD / 2);
  });

  it('refuses more services than an environment may hold', async () => {
    const created = await callUnary(
      ctl.environments,
      'createEnvironment',
      control.CreateEnvironmentRequest.fromPartial({ project: 'limits', name: 'count' }),
    );
    const id = created.environment!.id;
    const add = (name: string) =>
      callUnary(
        ctl.environments,
        'addService',
        control.AddServiceRequest.fromPartial({ environmentId: id, service: container(name) }),
      );
    for (let i = 0; i < LIMITS.servicesPerEnvironment; i++) await add(`s${i}`);
    const r = await refusal(add('one-too-many'));
    expect(r).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'service' });
    expect(r.message).toContain(`the limit is ${LIMITS.servicesPerEnvironment}`);
  });
});
