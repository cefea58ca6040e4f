import * as grpc from '@grpc/grpc-js';
import { Bus } from '@stageline/bus';
import { newId, OutboxMessage, OutboxRelay, openDatabase } from '@stageline/db';
import { startGrpcServer } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { planner as plannerv1 } from '@stageline/proto';
import { entities } from './adapters/db/entities.ts';
import { PgEnvironmentStore } from './adapters/db/environment-store.ts';
import { migrations } from './adapters/db/migrations.ts';
import { deploymentService } from './adapters/grpc/deployments.ts';
import { controlServices } from './adapters/grpc/handlers.ts';
import { followRuns } from './adapters/nats/runs.ts';
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
  const planner = new plannerv1.PlannerServiceClient(config.plannerAddress, grpc.credentials.createInsecure());
  const runs = await followRuns(bus, app);
  const server = await startGrpcServer({
    address: config.grpcListen,
    services: [...controlServices(app, log), deploymentService({ planner, bus, log })],
    log,
  });
  log.info({ address: server.address }, 'control serving');

  return {
    address: server.address,
    async stop() {
      server.setServing(false);
      await server.shutdown();
      planner.close();
      await runs.stop();
      await relay.stop();
      await db.close();
      await bus.close();
    },
  };
}
