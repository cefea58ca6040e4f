// Wiring only: config → logger → connections → servers, and a graceful drain on SIGTERM/SIGINT.
import { Bus, publishCancel } from '@stageline/bus';
import { OutboxMessage, OutboxRelay, openDatabase } from '@stageline/db';
import { startGrpcServer } from '@stageline/grpc';
import { createLogger } from '@stageline/log';
import { entities } from './adapters/db/entities.ts';
import { migrations } from './adapters/db/migrations.ts';
import { plannerService } from './adapters/grpc/planner-service.ts';
import { consumeRequests, consumeResults } from './adapters/nats/consumers.ts';
import { snapshotClient } from './adapters/snapshot-client.ts';
import { PlannerApp } from './app/planner-app.ts';
import { ConfigError, loadConfig, type PlannerConfig } from './config.ts';

const SERVICE = 'planner';

let config: PlannerConfig;
try {
  config = loadConfig(process.env);
} catch (e) {
  if (!(e instanceof ConfigError)) throw e;
  console.error(`${SERVICE}: invalid configuration: ${e.message}`);
  process.exit(2);
}

const log = createLogger({ service: SERVICE, level: config.logLevel });

// What is open so far, closed in reverse order: a signal or a failure during start-up closes only that.
const closers: Array<{ name: string; close: () => Promise<void> }> = [];
let stopping: Promise<void> | undefined;

function stop(reason: string, exitCode: number): Promise<void> {
  stopping ??= (async () => {
    log.info({ reason }, 'shutting down');
    let code = exitCode;
    for (const { name, close } of closers.toReversed()) {
      try {
        await close();
      } catch (err) {
        log.error({ err, name }, 'error while closing');
        code = code === 0 ? 1 : code;
      }
    }
    log.info({ exitCode: code }, 'stopped');
    process.exit(code);
  })();
  return stopping;
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => void stop(signal, 0));
}

try {
  const bus = await Bus.connect({ url: config.natsUrl, prefix: config.busPrefix, name: SERVICE, log });
  closers.push({ name: 'bus', close: () => bus.close() });
  await bus.ensureStreams();

  const db = await openDatabase({
    url: config.databaseUrl,
    schema: SERVICE,
    entities: [...entities, OutboxMessage],
    migrations,
    log,
  });
  closers.push({ name: 'database', close: () => db.close() });

  const relay = new OutboxRelay({ db, publish: (subject, data, opts) => bus.publish(subject, data, opts), log });
  relay.start();
  closers.push({ name: 'outbox relay', close: () => relay.stop() });

  const control = snapshotClient(config.controlAddress);
  closers.push({ name: 'control client', close: async () => control.close() });

  const app = new PlannerApp({
    db,
    subjects: bus.subjects,
    snapshot: (id) => control.get(id),
    publishCancel: (deploymentId) => publishCancel(bus, deploymentId),
    onCommit: () => relay.kick(),
    log,
  });
  const requests = await consumeRequests(bus, app);
  closers.push({ name: 'requests consumer', close: () => requests.stop() });
  const results = await consumeResults(bus, app);
  closers.push({ name: 'results consumer', close: () => results.stop() });
  // Runs queued before a restart start now.
  void app.kickAll();

  const server = await startGrpcServer({ address: config.grpcListen, services: [plannerService(app, log)], log });
  // shutdown() flips health to NOT_SERVING first, then drains in-flight calls.
  closers.push({ name: 'grpc', close: () => server.shutdown() });

  log.info({ grpc: server.address, busPrefix: config.busPrefix }, `${SERVICE} started`);
} catch (err) {
  log.fatal({ err }, `${SERVICE} failed to start`);
  await stop('start-up failed', 1);
}
