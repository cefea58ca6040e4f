// Wiring only: config → logger → connections → servers; runService drains them on SIGTERM/SIGINT.
import { Bus, startWorker } from '@stageline/bus';
import { OutboxMessage, openDatabase } from '@stageline/db';
import { startGrpcServer } from '@stageline/grpc';
import { bus as busv1, control } from '@stageline/proto';
import { KeyRing, keySourceFromEnv } from '@stageline/secrets';
import { busAnswers, runService, startHealth } from '@stageline/service';
import { BuildahBuilder } from './adapters/builder/buildah.ts';
import { BuildStore } from './adapters/db/build-store.ts';
import { migrations } from './adapters/db/migrations.ts';
import { MirrorStore } from './adapters/db/mirror-store.ts';
import { loadGitCredentials } from './adapters/git/credentials.ts';
import { GitClient } from './adapters/git/git.ts';
import { buildService } from './adapters/grpc/build-service.ts';
import { BuildLocks } from './adapters/nats/build-lock.ts';
import { noopBuildJob, noopBuildSettings } from './adapters/noop-executor.ts';
import { loadCredentials } from './adapters/registry/auth-file.ts';
import { RegistryClient } from './adapters/registry/client.ts';
import { type BuildJobDeps, handleBuildJob } from './app/build-job.ts';
import { openBuildJob } from './app/open-job.ts';
import { loadConfig } from './config.ts';

const SERVICE = 'build';
const BUILD_ERROR = control.ServiceState.SERVICE_STATE_BUILD_ERROR;

await runService(SERVICE, loadConfig, async ({ config, log, onClose }) => {
  // Benchmarks only (test/bench): STAGELINE_EXECUTOR=noop swaps the job handler for one that just sleeps.
  const noop = noopBuildSettings(process.env);
  if (noop) log.warn(noop, 'NOOP EXECUTOR: nothing is built or deployed');
  // Secret env values arrive sealed; the keys open them right before a job or a prediction uses them.
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

  const db = await openDatabase({
    url: config.databaseUrl,
    schema: SERVICE,
    entities: [OutboxMessage],
    migrations,
    log,
  });
  onClose('database', () => db.close());

  let credentials: Awaited<ReturnType<typeof loadCredentials>>;
  try {
    credentials = await loadCredentials(config.registryAuthFile);
  } catch (e) {
    // The message names the problem, never the file's content.
    throw new Error(`REGISTRY_AUTH_FILE: ${e instanceof Error ? e.message : String(e)}`);
  }
  const registry = new RegistryClient({
    insecureHosts: config.insecureRegistries,
    credentials,
    log: log.child({ component: 'registry' }),
  });
  let gitCredentials: Awaited<ReturnType<typeof loadGitCredentials>>;
  try {
    gitCredentials = await loadGitCredentials(config.gitCredentialsFile);
  } catch (e) {
    // The message names the problem, never the file's content.
    throw new Error(`GIT_CREDENTIALS_FILE: ${e instanceof Error ? e.message : String(e)}`);
  }
  const builds = new BuildStore(db);
  const git = new GitClient({ workDir: config.workDir, credentials: gitCredentials, sshProgram: config.gitSshProgram });
  const locks = await BuildLocks.open(bus, { ttlMs: config.buildLockTtlMs, log: log.child({ component: 'locks' }) });
  const jobDeps: BuildJobDeps = {
    registry,
    mirrorRegistry: config.mirrorRegistry,
    mirrors: new MirrorStore(db),
    git: {
      git,
      builder: new BuildahBuilder({ authFile: config.registryAuthFile, insecureRegistries: config.insecureRegistries }),
      registry,
      mirrorRegistry: config.mirrorRegistry,
      builds,
      locks,
      workDir: config.workDir,
      fingerprint: (value) => secrets.fingerprint(value),
    },
  };

  // One durable consumer (`build-workers`) shared by every build process; 7 slots in this one.
  const worker = await startWorker<busv1.BuildJob>({
    bus,
    role: 'build',
    slots: 7,
    ackWaitMs: config.workerAckWaitMs,
    drainGraceMs: config.workerDrainGraceMs,
    durable: 'build-workers',
    log,
    decode: (data) => busv1.BuildJob.decode(data),
    identify: (job) => ({
      jobId: job.jobId,
      deploymentId: job.deploymentId,
      serviceId: job.service?.id ?? '',
      attempt: job.attempt,
    }),
    handle: async (sealed, ctx) => {
      let job: busv1.BuildJob;
      try {
        job = openBuildJob(secrets, sealed);
      } catch (e) {
        // A job this process can never run (its key is missing here): an outcome, not a redelivery.
        const message = e instanceof Error ? e.message : String(e);
        ctx.log.error({ err: e }, 'secret env values cannot be opened');
        return busv1.JobFinished.fromPartial({ succeeded: false, state: BUILD_ERROR, message });
      }
      return noop ? noopBuildJob(noop, job, ctx) : handleBuildJob(jobDeps, job, ctx);
    },
  });
  // Stopped first on shutdown: jobs in flight are handed back for another process to redo.
  onClose('worker', () => worker.stop());

  const server = await startGrpcServer({
    address: config.grpcListen,
    services: [
      buildService({
        builds,
        log,
        predict: {
          open: (job) => openBuildJob(secrets, job),
          git,
          registry,
          mirrorRegistry: config.mirrorRegistry,
          builds,
          workDir: config.workDir,
          fingerprint: (value) => secrets.fingerprint(value),
        },
      }),
    ],
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

  log.info(
    { grpc: server.address, busPrefix: config.busPrefix, mirrorRegistry: config.mirrorRegistry },
    `${SERVICE} started`,
  );
});
