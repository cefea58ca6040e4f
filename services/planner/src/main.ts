// Wiring only: config → logger → connections → servers; runService drains them on SIGTERM/SIGINT.
import { hostname } from 'node:os';
import { Bus, publishCancel } from '@stageline/bus';
import { OutboxMessage, OutboxRelay, openDatabase } from '@stageline/db';
import { startGrpcServer } from '@stageline/grpc';
import { KeyRing, keySourceFromEnv, watchActiveKey } from '@stageline/secrets';
import { busAnswers, runService, startHealth } from '@stageline/service';
import { trackQueues } from '@stageline/telemetry';
import { buildPredictor } from './adapters/build-client.ts';
import { entities } from './adapters/db/entities.ts';
import { migrations } from './adapters/db/migrations.ts';
import { queuedByEnvironment } from './adapters/db/run-sql.ts';
import { pgRunStore } from './adapters/db/run-store.ts';
import { purgeSecrets, resealPlannerSecrets } from './adapters/db/secrets.ts';
import { plannerService } from './adapters/grpc/planner-service.ts';
import {
  consumeEnvironmentEvents,
  consumeJobDeadLetters,
  consumeRequests,
  consumeResults,
} from './adapters/nats/consumers.ts';
import { jobStreamCreatedAt } from './adapters/nats/job-streams.ts';
import { snapshotClient } from './adapters/snapshot-client.ts';
import { startLostJobRecovery } from './app/lost-jobs.ts';
import { PlannerApp } from './app/planner-app.ts';
import { loadConfig } from './config.ts';

await runService('planner', loadConfig, async ({ config, log, onClose }) => {
  // The planner never opens a secret: it keeps them sealed and seals them again under a new key.
  const secrets = KeyRing.load(keySourceFromEnv(process.env));
  const bus = await Bus.connect({
    url: config.natsUrl,
    prefix: config.busPrefix,
    name: 'planner',
    log,
    credentialsFile: config.natsCredentialsFile,
  });
  onClose('bus', () => bus.close());
  await bus.ensureStreams();

  const db = await openDatabase({
    url: config.databaseUrl,
    schema: 'planner',
    entities: [...entities, OutboxMessage],
    migrations,
    log,
  });
  onClose('database', () => db.close());
  // Sealed under the active key at start and within 5 s of a rotation (stageline admin rotate-key).
  const reseal = async (key: string) => {
    const resealed = await resealPlannerSecrets(db, secrets);
    if (resealed > 0) log.info({ resealed, key }, 'secret values sealed under the active key');
  };
  const startKey = secrets.activeKeyId();
  await reseal(startKey);
  const keyWatch = watchActiveKey(secrets, reseal, {
    resealedUnder: startKey,
    onError: (err) => log.error({ err }, 'resealing secret values failed'),
  });
  onClose('key watch', () => keyWatch.stop());

  const relay = new OutboxRelay({ db, publish: (subject, data, opts) => bus.publish(subject, data, opts), log });
  relay.start();
  onClose('outbox relay', () => relay.stop());

  // Mutual TLS: the planner's certificate is its identity to control and build.
  const asPlanner = { ca: config.tls.ca, identity: config.tls };
  const control = snapshotClient(config.controlAddress, asPlanner);
  onClose('control client', () => control.close());
  const builds = buildPredictor(config.buildAddress, asPlanner);
  onClose('build client', () => builds.close());

  const store = pgRunStore(db);
  const app = new PlannerApp(
    {
      db,
      subjects: bus.subjects,
      snapshot: (id) => control.get(id),
      publishCancel: (deploymentId) => publishCancel(bus, deploymentId),
      onCommit: () => relay.kick(),
      predictBuilds: (jobs) => builds.predict(jobs),
      log,
      instance: `${hostname()}:${process.pid}`,
    },
    store,
  );
  const requests = await consumeRequests(bus, app);
  onClose('requests consumer', () => requests.stop());
  const results = await consumeResults(bus, app);
  onClose('results consumer', () => results.stop());
  const environments = await consumeEnvironmentEvents(bus, (environmentId, serviceId) =>
    purgeSecrets(db, environmentId, serviceId),
  );
  onClose('environment events consumer', () => environments.stop());
  // A job a worker gave up on fails its service, so its run never hangs.
  const deadLetters = await consumeJobDeadLetters(bus, app);
  onClose('dead letters consumer', () => deadLetters.stop());
  // stageline_queue_depth, read at each scrape.
  const untrackQueues = trackQueues(async () =>
    (await queuedByEnvironment(db.em())).map((q) => ({ environment: q.environmentId, depth: q.queued })),
  );
  onClose('queue metrics', () => untrackQueues());
  // Runs queued before a restart start now.
  void app.kickAll();
  // No run hangs: jobs past their deadline fail their service (app/deadlines.ts); and no queue stays
  // stuck: a queued run that could not start when the run before it ended (control away) starts now.
  const limits = { queueMs: config.jobQueueLimitMs, graceMs: config.jobDeadlineGraceMs };
  const sweep = setInterval(
    () => {
      void app.expireOverdueJobs(limits).catch((e: unknown) => log.warn({ err: e }, 'deadline sweep failed'));
      void app.kickAll();
    },
    Math.min(30_000, Math.max(1_000, Math.floor(limits.queueMs / 3))),
  );
  onClose('deadline sweep', () => clearInterval(sweep));
  // A NATS store lost takes queued jobs along: dispatched again from the outbox (app/lost-jobs.ts).
  const recovery = startLostJobRecovery({
    store,
    subjects: bus.subjects,
    streamCreatedAt: jobStreamCreatedAt(bus),
    onCommit: () => relay.kick(),
    log,
  });
  onClose('lost-job recovery', () => recovery.stop());

  const server = await startGrpcServer({
    address: config.grpcListen,
    services: [plannerService(app, log)],
    tls: config.tls,
    log,
  });
  // shutdown() flips health to NOT_SERVING first, then drains in-flight calls.
  onClose('grpc', () => server.shutdown());
  // Health means ready: NOT_SERVING (and /readyz 503) while the database or the bus does not answer.
  const health = await startHealth({
    listen: config.healthListen,
    checks: { database: () => db.ping(), bus: busAnswers(bus.nc) },
    onChange: (ready) => server.setServing(ready),
    log,
  });
  onClose('health', () => health.close());
  log.info({ grpc: server.address, busPrefix: config.busPrefix }, 'planner started');
});
