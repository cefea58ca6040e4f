// Wiring only: config → logger → connections → servers; runService drains them on SIGTERM/SIGINT.

import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { Bus, deployHostConsumer, isWorkerStopping, startWorker } from '@stageline/bus';
import { openDatabase } from '@stageline/db';
import { startGrpcServer } from '@stageline/grpc';
import { bus as busv1 } from '@stageline/proto';
import { KeyRing, keySourceFromEnv, watchActiveKey } from '@stageline/secrets';
import { busAnswers, runService, startHealth } from '@stageline/service';
import { PgChartStore } from './adapters/db/chart-store.ts';
import { PgCronTicks } from './adapters/db/cron-ticks.ts';
import { entities } from './adapters/db/entities.ts';
import { PgLiveReleases } from './adapters/db/live-releases.ts';
import { migrations } from './adapters/db/migrations.ts';
import { PgCredentialStore, PgHostPorts, PgReleaseStore } from './adapters/db/release-store.ts';
import { resealDeploySecrets } from './adapters/db/reseal.ts';
import { FsChartStore } from './adapters/fs/chart-store.ts';
import { releaseService } from './adapters/grpc/release-service.ts';
import { runtimeService } from './adapters/grpc/runtime-service.ts';
import { KubernetesRuntime } from './adapters/kubernetes/helm-runtime.ts';
import { KubectlRuntimeObserver } from './adapters/kubernetes/runtime-observer.ts';
import { noopDeployJob, noopDeploySettings } from './adapters/noop-executor.ts';
import { LocalRuntime } from './adapters/podman/local-runtime.ts';
import { Podman } from './adapters/podman/podman.ts';
import { PodmanRuntimeObserver } from './adapters/podman/runtime-observer.ts';
import { PgManagedDatabases } from './adapters/postgres/managed-databases.ts';
import { ProcessRunner } from './adapters/process/command-runner.ts';
import { pickFreePort } from './adapters/process/free-port.ts';
import { CronScheduler } from './app/cron-scheduler.ts';
import { type DeployJobDeps, handleDeployJob } from './app/deploy-job.ts';
import { keyedSerializer } from './app/keyed-serializer.ts';
import type { Runtime } from './app/ports.ts';
import { type RuntimeObserver, RuntimeWatch } from './app/runtime-status.ts';
import { withSealedSecrets } from './app/sealed-jobs.ts';
import { ConfigError, loadConfig } from './config.ts';
import { secretValuesIn } from './domain/secret-values.ts';

const SERVICE = 'deploy';

/** KUBE_MIRROR_CREDENTIALS: `{"username", "password"}`; a file that is not that stops the start. */
function readMirrorCredentials(file: string): { username: string; password: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError('KUBE_MIRROR_CREDENTIALS', `${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const { username, password } = (parsed ?? {}) as { username?: unknown; password?: unknown };
  if (typeof username !== 'string' || username === '' || typeof password !== 'string') {
    throw new ConfigError('KUBE_MIRROR_CREDENTIALS', `${file}: expected {"username": "…", "password": "…"}`);
  }
  return { username, password };
}

await runService(SERVICE, loadConfig, async ({ config, log, onClose }) => {
  // Read before anything connects: a bad file stops the start naming the variable.
  const mirrorFile = config.kubeMirror.credentialsFile;
  const mirrorCredentials = mirrorFile !== undefined ? readMirrorCredentials(mirrorFile) : undefined;
  // Benchmarks only (test/bench): STAGELINE_EXECUTOR=noop swaps the job handler for one that just sleeps.
  const noop = noopDeploySettings(process.env);
  if (noop) log.warn(noop, 'NOOP EXECUTOR: nothing is built or deployed');
  // Secrets arrive and are stored sealed; the keys open them right before a job uses them.
  const secrets = KeyRing.load(keySourceFromEnv(process.env));
  const bus = await Bus.connect({
    url: config.natsUrl,
    prefix: config.busPrefix,
    name: SERVICE,
    log,
    credentialsFile: config.natsCredentialsFile,
  });
  onClose('bus', () => bus.close());
  await bus.ensureStreams();

  const db = await openDatabase({ url: config.databaseUrl, schema: SERVICE, entities, migrations, log });
  onClose('database', () => db.close());
  // Charts keep their secrets sealed; copies in clear that a crash left (helm's) go first.
  // Kept in PostgreSQL, where every worker of the environment's host (or its replacement) finds them;
  // the charts directory only holds helm's opened copies and charts an older version wrote there.
  const charts = new PgChartStore({
    db,
    secrets,
    legacy: new FsChartStore(path.join(config.stateDir, 'charts'), secrets),
  });
  await charts.removeOpened();
  // Sealed under the active key at start and within 5 s of a rotation (stageline admin rotate-key).
  const reseal = async (key: string) => {
    const resealed = await resealDeploySecrets(db, secrets);
    const chartFiles = await charts.reseal();
    if (resealed + chartFiles > 0) {
      log.info({ resealed, chartFiles, key }, 'secret values sealed under the active key');
    }
  };
  const startKey = secrets.activeKeyId();
  await reseal(startKey);
  const keyWatch = watchActiveKey(secrets, reseal, {
    resealedUnder: startKey,
    onError: (err) => log.error({ err }, 'resealing secret values failed'),
  });
  onClose('key watch', () => keyWatch.stop());

  const releases = new PgReleaseStore({ db, secrets });
  const runner = new ProcessRunner();
  const local = new LocalRuntime({
    podman: new Podman({ runner, binary: config.podman }),
    ports: new PgHostPorts({ db, pickFreePort }),
    charts,
    workDir: path.join(config.stateDir, 'local'),
    log,
  });
  const runtimes = new Map<string, Runtime>([
    ['local', local],
    [
      'kubernetes',
      new KubernetesRuntime({
        runner,
        helm: config.helm,
        kubectl: config.kubectl,
        git: config.git,
        charts,
        mirror: config.kubeMirror,
        ...(mirrorCredentials !== undefined ? { mirrorCredentials } : {}),
      }),
    ],
  ]);
  const cronTicks = new PgCronTicks({ db });
  const jobDeps: DeployJobDeps = {
    releases,
    charts,
    credentials: new PgCredentialStore({ db, secrets }),
    ...(config.managedPostgres !== undefined
      ? {
          managed: new PgManagedDatabases({
            adminUrl: config.managedPostgres.adminUrl,
            endpoints: {
              local: { host: config.managedPostgres.host, port: config.managedPostgres.port },
              ...(config.managedPostgres.kubernetes !== undefined
                ? { kubernetes: config.managedPostgres.kubernetes }
                : {}),
            },
          }),
        }
      : {}),
    runtime: (name) => runtimes.get(name),
    kubeContexts: config.kubeContexts,
    serialize: keyedSerializer(),
    fingerprint: (value) => secrets.fingerprint(value),
    now: () => new Date(),
    // The worker framework aborts a job's signal with this reason when the process stops (not a cancel).
    isShutdown: isWorkerStopping,
  };

  // Running status: what runs, kept in memory from podman events and a poll of each runtime.
  const runtimeWatch = new RuntimeWatch({
    releases: new PgLiveReleases(db),
    observers: new Map<string, RuntimeObserver>([
      ['local', new PodmanRuntimeObserver(new Podman({ runner, binary: config.podman }), log)],
      ['kubernetes', new KubectlRuntimeObserver(runner, config.kubectl)],
    ]),
    cronRuns: cronTicks,
    secretValues: async (r) =>
      (await charts.customChart(r.chartPath)) ? [] : secretValuesIn(await charts.manifests(r.chartPath)),
    pollMs: config.runtimePollMs,
    log: log.child({ component: 'runtime-status' }),
  });
  // Benchmarks' noop executor deploys nothing: nothing to watch.
  if (!noop) runtimeWatch.start();
  onClose('runtime status', () => runtimeWatch.stop());

  const server = await startGrpcServer({
    address: config.grpcListen,
    services: [releaseService({ releases, cronRuns: cronTicks }, log), runtimeService(runtimeWatch, log)],
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

  // Last to start, first to stop: jobs in flight at shutdown are handed back for another process.
  const deployWorker = (consumer: { durable: string; filterSubject: string }) =>
    startWorker<busv1.DeployJob>({
      bus,
      role: 'deploy',
      slots: config.slots,
      ackWaitMs: config.workerAckWaitMs,
      drainGraceMs: config.workerDrainGraceMs,
      ...consumer,
      log,
      decode: (data) => busv1.DeployJob.decode(data),
      identify: (job) => ({
        jobId: job.jobId,
        deploymentId: job.deploymentId,
        serviceId: job.service?.id ?? '',
        attempt: job.attempt,
      }),
      handle: (sealed, workerCtx) =>
        withSealedSecrets(secrets, sealed, workerCtx, (job, ctx) =>
          noop ? noopDeployJob(noop, job, ctx) : handleDeployJob(jobDeps, job, ctx),
        ),
    });
  // Jobs any worker takes; with DEPLOY_HOST also those of the `local` environments bound to this host.
  const workers = [await deployWorker({ durable: 'deploy-workers', filterSubject: bus.subjects.filters.deployJobs })];
  if (config.deployHost !== undefined) {
    const { durable, filterSubject = '' } = deployHostConsumer(bus.subjects, config.deployHost);
    workers.push(await deployWorker({ durable, filterSubject }));
    log.info({ deployHost: config.deployHost }, 'taking the deploy jobs bound to this host');
  }
  onClose('worker', async () => {
    await Promise.all(workers.map((w) => w.stop()));
  });

  // Cron jobs of the local runtime: every process polls; a tick is claimed in PostgreSQL, so it runs once.
  if (config.cron && !noop) {
    const clockFile = config.cronClockFile;
    const scheduler = new CronScheduler({
      releases,
      ticks: cronTicks,
      executor: local,
      owner: `${hostname()}:${process.pid}`,
      clock: () => {
        if (clockFile === undefined) return new Date();
        // Tests drive the schedule's clock through this file; the jobs themselves run for real.
        const text = (() => {
          try {
            return readFileSync(clockFile, 'utf8').trim();
          } catch {
            return '';
          }
        })();
        const at = /^\d+$/.test(text) ? new Date(Number(text)) : new Date(text);
        return Number.isNaN(at.getTime()) ? new Date() : at;
      },
      log: log.child({ component: 'cron' }),
      pollMs: config.cronPollMs,
    });
    scheduler.start();
    onClose('cron', () => scheduler.stop());
  }

  log.info({ grpc: server.address, busPrefix: config.busPrefix }, `${SERVICE} started`);
});
