import { readFile } from 'node:fs/promises';
import { Bus } from '@stageline/bus';
import { consoleAssetsDir } from '@stageline/console';
import { newId, OutboxMessage, OutboxRelay, openDatabase } from '@stageline/db';
import { failedPrecondition } from '@stageline/errors';
import { callUnary, connect, domainErrorFromGrpc, startGrpcServer } from '@stageline/grpc';
import type { Logger } from '@stageline/log';
import { DENY_ALL } from '@stageline/policy';
import { build as buildv1, bus as busv1, deploy as deployv1, planner as plannerv1 } from '@stageline/proto';
import { KeyRing, keySourceFromEnv, SecretError, watchActiveKey } from '@stageline/secrets';
import { busAnswers, startHealth } from '@stageline/service';
import { PgAutoDeployStore } from './adapters/db/auto-deploy-store.ts';
import { entities } from './adapters/db/entities.ts';
import { PgEnvironmentStore } from './adapters/db/environment-store.ts';
import { migrations } from './adapters/db/migrations.ts';
import { resealControlSecrets } from './adapters/db/reseal.ts';
import { PgTokenStore } from './adapters/db/token-store.ts';
import { GitCli } from './adapters/git/git-source.ts';
import { accessService, Scope } from './adapters/grpc/access.ts';
import { deploymentService } from './adapters/grpc/deployments.ts';
import { controlServices } from './adapters/grpc/handlers.ts';
import { type RunningConsole, startConsole } from './adapters/http/console-server.ts';
import { followRuns } from './adapters/nats/runs.ts';
import { RegistryHttp } from './adapters/registry/registry-tags.ts';
import { AccessApp } from './app/access-app.ts';
import { AutoDeployApp } from './app/auto-deploy-app.ts';
import { ControlApp } from './app/control-app.ts';
import type { ControlConfig } from './config.ts';

export interface RunningControl {
  /** host:port the gRPC server listens on. */
  address: string;
  /** The web console's URL (`https://127.0.0.1:8443`); undefined when it is off. */
  consoleUrl: string | undefined;
  /** Stops taking calls, finishes relaying events, closes connections. */
  stop(): Promise<void>;
}

/** Wires the control service: NATS, PostgreSQL (schema `control`), the outbox relay and gRPC. */
export async function startControl(config: ControlConfig, log: Logger): Promise<RunningControl> {
  // Before anything else: without its keys control could store no secret.
  const secrets = KeyRing.load(config.secretKeys ?? keySourceFromEnv(process.env));
  const bus = await Bus.connect({
    url: config.natsUrl,
    prefix: config.busPrefix,
    name: 'stageline-control',
    log,
    credentialsFile: config.natsCredentialsFile,
  });
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
  // Sealed under the active key at start and whenever it changes (another control process rotated).
  const reseal = async (key: string) => {
    const resealed = await resealControlSecrets(db, secrets);
    if (resealed > 0) log.info({ resealed, key }, 'secret values sealed under the active key');
    return resealed;
  };
  const startKey = secrets.activeKeyId();
  await reseal(startKey);
  const keyWatch = watchActiveKey(secrets, reseal, {
    resealedUnder: startKey,
    onError: (err) => log.error({ err }, 'resealing secret values failed'),
  });
  const rotateSecretKey = async () => {
    let keyId: string;
    try {
      keyId = secrets.rotate();
    } catch (e) {
      if (e instanceof SecretError) throw failedPrecondition(e.message);
      throw e;
    }
    log.info({ key: keyId }, 'secret key rotated');
    return { keyId, resealed: await reseal(keyId), keyIds: secrets.keyIds() };
  };
  const store = new PgEnvironmentStore({
    db,
    subjects: bus.subjects,
    onCommit: () => relay.kick(),
    log: log.child({ component: 'db', schema: 'control' }),
  });
  const clock = { now: () => new Date() };
  const conflicts = await store.assignNamespaces();
  for (const c of conflicts) {
    log.warn(
      c,
      'an environment from before namespaces were unique shares its namespace: change its settings.namespace',
    );
  }
  const app = new ControlApp({
    store,
    newId,
    clock,
    secrets,
    policy: {
      sources: config.sourcePolicy ?? DENY_ALL,
      kubeContexts: config.kubeContexts ?? [],
      deployHosts: config.deployHosts ?? [],
    },
  });
  const access = new AccessApp({ tokens: new PgTokenStore(db), newId, clock });
  if (config.adminTokenFile !== '') {
    const token = (await readFile(config.adminTokenFile, 'utf8')).trim();
    const outcome = await access.ensureBootstrapToken(token);
    if (outcome === 'revoked')
      log.warn({ file: config.adminTokenFile }, 'the bootstrap admin token was revoked: not restored');
    else log.info({ file: config.adminTokenFile, outcome }, 'bootstrap admin token');
  }
  // Mutual TLS: control's certificate is its identity to the planner and the build service.
  const asControl = { ca: config.tls.ca, identity: config.tls };
  const planner = connect(plannerv1.PlannerServiceClient, config.plannerAddress, asControl);
  const build = connect(buildv1.BuildServiceClient, config.buildAddress, asControl);
  const releases = connect(deployv1.ReleaseServiceClient, config.deployAddress, asControl);
  const runtime = connect(deployv1.RuntimeServiceClient, config.deployAddress, asControl);
  const serviceInfos = async (environmentId: string) => (await app.listServices({ environmentId })).services;
  const runs = await followRuns(bus, app);
  const scope = new Scope((id) => app.projectOf(id));
  const services = async (environmentId: string) =>
    (await app.listServices({ environmentId })).services.map((s) => s.id);
  // Auto-deploy: webhook deliveries (on the console's listener) and pollers become planner requests.
  const autoDeploy = new AutoDeployApp({
    store: new PgAutoDeployStore(db),
    environments: store,
    control: app,
    secrets,
    submit: async (request) => {
      const full = busv1.ActionRequested.fromPartial({ ...request, requestId: newId() });
      try {
        const { deployment } = await callUnary(planner, 'submit', { request: full }, { retry: { withinMs: 8_000 } });
        return deployment!.id;
      } catch (e) {
        throw domainErrorFromGrpc(e, 'planner');
      }
    },
    git: new GitCli({ stateDir: config.stateDir ?? '.stageline' }),
    registry: new RegistryHttp(),
    sources: config.sourcePolicy ?? DENY_ALL,
    clock,
    log,
  });
  const polling = autoDeploy.startPolling(config.autoDeployTickMs);
  const server = await startGrpcServer({
    address: config.grpcListen,
    services: [
      ...controlServices(app, scope, log, autoDeploy),
      deploymentService({ planner, build, releases, runtime, serviceInfos, scope, services, bus, log }),
      accessService(access, log, rotateSecretKey),
    ],
    tls: config.tls,
    verifyToken: (token) => access.verify(token),
    log,
  });
  // Health means ready: NOT_SERVING (and /readyz 503) while the database or the bus does not answer.
  const health = await startHealth({
    listen: config.healthListen,
    checks: { database: () => db.ping(), bus: busAnswers(bus.nc) },
    onChange: (ready) => server.setServing(ready),
    log,
  });
  // The console calls the public gRPC port like any client, with the signed-in user's token.
  const grpcPort = server.address.slice(server.address.lastIndexOf(':') + 1);
  let webConsole: RunningConsole | undefined;
  if (config.consoleListen !== undefined) {
    webConsole = await startConsole({
      listen: config.consoleListen,
      tls: config.tls,
      grpcAddress: `127.0.0.1:${grpcPort}`,
      verifyToken: (token) => access.verify(token),
      assetsDir: consoleAssetsDir,
      log,
      hooks: (environmentId, headers, body) => autoDeploy.delivery(environmentId, headers, body),
    });
  }
  log.info({ address: server.address, console: webConsole?.url }, 'control serving');

  return {
    address: server.address,
    consoleUrl: webConsole?.url,
    async stop() {
      await webConsole?.close();
      await polling.stop();
      await health.close();
      server.setServing(false);
      await server.shutdown();
      planner.close();
      build.close();
      releases.close();
      runtime.close();
      await runs.stop();
      await keyWatch.stop();
      await relay.stop();
      await db.close();
      await bus.close();
    },
  };
}
