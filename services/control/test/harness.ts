import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { connect as connectGrpc } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { parseSourcePolicy } from '@stageline/policy';
import { bus, control } from '@stageline/proto';
import type { KeySource } from '@stageline/secrets';
import { testSecurity, useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll } from 'vitest';
import type { ControlConfig } from '../src/config.ts';
import { type RunningControl, startControl } from '../src/service.ts';

/**
 * Control's configuration for a test: the isolated database and bus, the test kit's TLS files and
 * admin token, and no planner, build or deploy service (the environment model needs none).
 */
export function testControlConfig(
  env: { natsUrl: string; databaseUrl: string; busPrefix: string },
  policy: { kubeContexts?: string[]; sourceAllow?: string } = {},
): ControlConfig {
  const security = testSecurity();
  return {
    grpcListen: '127.0.0.1:0',
    healthListen: '127.0.0.1:0',
    natsUrl: env.natsUrl,
    databaseUrl: env.databaseUrl,
    busPrefix: env.busPrefix,
    logLevel: 'silent',
    plannerAddress: '127.0.0.1:1',
    buildAddress: '127.0.0.1:1',
    deployAddress: '127.0.0.1:1',
    tls: security.files('control'),
    adminTokenFile: security.adminTokenFile,
    kubeContexts: policy.kubeContexts ?? [],
    sourcePolicy: parseSourcePolicy(policy.sourceAllow ?? ''),
  };
}

/**
 * A control service on real PostgreSQL and NATS, isolated per test file, with gRPC clients: TLS and
 * the admin token, the way every user reaches it (control makes the token live at start).
 */
export function useControl(
  policy: { kubeContexts?: string[]; sourceAllow?: string; secretKeys?: KeySource; console?: boolean } = {},
) {
  const security = testSecurity();
  const env = useIsolatedEnvironment();
  let running: RunningControl | undefined;
  const clients: {
    environments?: control.EnvironmentServiceClient;
    pipelines?: control.PipelineServiceClient;
  } = {};
  beforeAll(async () => {
    running = await startControl(
      {
        ...testControlConfig(env, policy),
        ...(policy.secretKeys !== undefined ? { secretKeys: policy.secretKeys } : {}),
        ...(policy.console === true ? { consoleListen: '127.0.0.1:0' } : {}),
      },
      createLogger({ service: 'control-test', level: process.env.LOG_LEVEL ?? 'silent' }),
    );
    clients.environments = connectGrpc(control.EnvironmentServiceClient, running.address, security.user());
    clients.pipelines = connectGrpc(control.PipelineServiceClient, running.address, security.user());
  });
  afterAll(async () => {
    clients.environments?.close();
    clients.pipelines?.close();
    await running?.stop();
  });
  return {
    env,
    security,
    get environments() {
      return clients.environments!;
    },
    get pipelines() {
      return clients.pipelines!;
    },
    get address() {
      return running!.address;
    },
    /** With `console: true`: the web console's URL. */
    get consoleUrl() {
      return running!.consoleUrl!;
    },
  };
}

/** Every EnvironmentEvent on JetStream for one environment, waiting until at least `atLeast` are there. */
export async function environmentEvents(
  natsUrl: string,
  prefix: string,
  environmentId: string,
  atLeast: number,
): Promise<bus.EnvironmentEvent[]> {
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    const stream = `${prefix.toUpperCase()}_EVENTS`;
    const subject = `${prefix}.events.environments.${environmentId}`;
    // The outbox relay publishes after commit; give it a bounded time to catch up.
    for (let attempt = 0; ; attempt++) {
      const events: bus.EnvironmentEvent[] = [];
      const info = await jsm.streams.info(stream);
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
        if (m && m.subject === subject) events.push(bus.EnvironmentEvent.decode(m.data));
      }
      if (events.length >= atLeast || attempt >= 100) return events;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await nc.close();
  }
}

type Builtin = Date | ((...args: never[]) => unknown) | Uint8Array | string | number | boolean | undefined;
/** The shape ts-proto's `fromPartial` accepts. */
export type DeepPartial<T> = T extends Builtin
  ? T
  : T extends Array<infer U>
    ? Array<DeepPartial<U>>
    : T extends { $case: string; value: unknown }
      ? { $case: T['$case']; value?: DeepPartial<T['value']> }
      : T extends object
        ? { [K in keyof T]?: DeepPartial<T[K]> }
        : Partial<T>;
