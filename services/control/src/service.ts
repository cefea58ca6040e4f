import { Bus } from '@stageline/bus';
import { newId, OutboxMessage, OutboxRelay, openDatabase } from '@stageline/db';
import { startGrpcServer } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { entities } from './adapters/db/entities.ts';
import { PgEnvironmentStore } from './adapters/db/environment-store.ts';
import { migrations } from './adapters/db/migrations.ts';
import { controlServices } from './adapters/grpc/handlers.ts';
import { ControlApp } from './app/control-app.ts';
import type { ControlConfig } from './config.ts';

export interface RunningControl {
  /** host:port the gRPC server listens on. */
  address: string;
  /** Stops taking calls, finishes relaying events, closes connections. */
  stop(): Promise<void>;
}

/** Wires the control service: NATS, PostgreSQL (schema `control`), the outbox relay and gRPC. */
export async function startControl(config: ControlConfig, log: Logger): Promise<RunningControl> {
  const bus = await Bus.connect({ url: config.natsUrl, prefix: config.busPrefix, name: 'stageline-control', log });
  await bus.ensureStreams();
  const db = await openDatabase({
    url: config.databaseUrl,
    schema: 'control',
    entities: [...entities, OutboxMessage],
    migrations,
    log,
  });
  const relay = new OutboxRelay({
    db,
    publish: (subject, data, opts) => bus.publish(subject, data, opts),
    log,
  });
  relay.start();
  const store = new PgEnvironmentStore({ db, subjects: bus.subjects, onCommit: () => relay.kick() });
  const app = new ControlApp({ store, newId, clock: { now: () => new Date() } });
  const server = await startGrpcServer({ address: config.grpcListen, services: controlServices(app, log), log });
  log.info({ address: server.address }, 'control serving');

  return {
    address: server.address,
    async stop() {
      server.setServing(false);
      await server.shutdown();
      await relay.stop();
      await db.close();
      await bus.close();
    },
  };
}
