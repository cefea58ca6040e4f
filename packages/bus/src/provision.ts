// Provisioning apart from running: every stream, durable consumer and key-value bucket Stageline
// uses, created or updated by one identity (`provision`) at set-up and start-up. Services that
// connect with credentials only look them up (`Bus.connect({ credentialsFile })`), so none of them
// needs rights that could change a stream.

import type { ConsumerConfig, ConsumerInfo, JetStreamManager, StreamInfo } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { DomainError } from '@stageline/errors';
import type { Logger } from '@stageline/log';
import type { Bus, ConsumerOptions } from './bus.ts';
import { differs } from './consumers.ts';
import { jetStreamErrorCode, toDomainError } from './jetstream-errors.ts';
import { STREAM_KEYS, type StreamKey, type Subjects } from './subjects.ts';
import { DEFAULT_WORKER_ACK_WAIT_MS } from './worker.ts';

/** What the services' own settings change in the provisioned objects (same variables, same defaults). */
export interface ProvisionSettings {
  /** Build and deploy workers' ack_wait (`WORKER_ACK_WAIT_MS`). */
  workerAckWaitMs: number;
  /** Slots of one deploy process (`DEPLOY_SLOTS`): the deploy consumer's max_ack_pending is 16 × this. */
  deploySlots: number;
  /** The build locks' lease (`BUILD_LOCK_TTL_MS`): the bucket's max_age. */
  buildLockTtlMs: number;
  /** Deploy hosts (`STAGELINE_DEPLOY_HOSTS`): each gets its durable consumer of the jobs bound to it. */
  deployHosts: readonly string[];
}

export const DEFAULT_PROVISION_SETTINGS: Readonly<ProvisionSettings> = {
  // The workers' own default: provisioned consumers must match what the workers ask for.
  workerAckWaitMs: DEFAULT_WORKER_ACK_WAIT_MS,
  deploySlots: 7,
  buildLockTtlMs: 30_000,
  deployHosts: [],
};

/** Slots of the planner's results consumer (services/planner RESULT_SLOTS). */
const PLANNER_RESULT_SLOTS = 256;
const JOB_RESULTS_TTL_MS = 24 * 3600 * 1000;

/** The durable consumers, by their logical name, as the services consume them. */
export type DurableName =
  | 'planner-requests'
  | 'planner-results'
  | 'planner-job-dead-letters'
  | 'planner-environments'
  | 'control-runs'
  | 'build-workers'
  | 'deploy-workers';

export function durableConsumers(
  subjects: Subjects,
  settings: Partial<ProvisionSettings> = {},
): Readonly<Record<DurableName, ConsumerOptions>> {
  const s = { ...DEFAULT_PROVISION_SETTINGS, ...settings };
  return {
    'planner-requests': { stream: 'requests', durable: 'planner-requests' },
    'planner-results': { stream: 'results', durable: 'planner-results', slots: PLANNER_RESULT_SLOTS },
    // Jobs a worker gave up on: the planner fails their service (no run hangs).
    'planner-job-dead-letters': {
      stream: 'dlq',
      durable: 'planner-job-dead-letters',
      filterSubject: `${subjects.prefix}.dlq.${subjects.prefix}.jobs.>`,
    },
    // Control's model changes: a removed service or environment takes its sealed secret values with it.
    'planner-environments': {
      stream: 'events',
      durable: 'planner-environments',
      filterSubject: subjects.filters.environmentEvents,
    },
    // Recorded in order per environment, several environments at once (services/control followRuns).
    'control-runs': { stream: 'events', durable: 'control-runs', filterSubject: subjects.filters.runEvents, slots: 16 },
    'build-workers': {
      stream: 'buildJobs',
      durable: 'build-workers',
      slots: 7,
      ackWaitMs: s.workerAckWaitMs,
      maxDeliver: 5,
    },
    // Jobs any deploy worker takes (`kubernetes`, and `local` without a host); host-bound ones have theirs.
    'deploy-workers': {
      stream: 'deployJobs',
      durable: 'deploy-workers',
      filterSubject: subjects.filters.deployJobs,
      slots: s.deploySlots,
      ackWaitMs: s.workerAckWaitMs,
      maxDeliver: 5,
    },
  };
}

/** The durable consumer of the deploy jobs bound to one host (`deploy-host-<host>`), taken by that host's workers. */
export function deployHostConsumer(
  subjects: Subjects,
  host: string,
  settings: Partial<ProvisionSettings> = {},
): ConsumerOptions {
  const s = { ...DEFAULT_PROVISION_SETTINGS, ...settings };
  return {
    stream: 'deployJobs',
    durable: `deploy-host-${host}`,
    filterSubject: subjects.hostDeployJobsFilter(host),
    slots: s.deploySlots,
    ackWaitMs: s.workerAckWaitMs,
    maxDeliver: 5,
  };
}

/** The key-value buckets: the workers' finished jobs (one per role) and the build locks. */
export type BucketKey = 'buildJobResults' | 'deployJobResults' | 'buildLocks';

export function bucketNames(subjects: Subjects): Readonly<Record<BucketKey, string>> {
  return {
    buildJobResults: `${subjects.streamPrefix}_build_job_results`,
    deployJobResults: `${subjects.streamPrefix}_deploy_job_results`,
    buildLocks: `${subjects.streamPrefix}_build_locks`,
  };
}

export interface ProvisionSummary {
  streams: string[];
  consumers: string[];
  buckets: string[];
}

/**
 * Create or update every stream, durable consumer and bucket; idempotent. `bus` must be connected
 * as an identity with the JetStream API (`provision`, or an anonymous server's any client).
 */
export async function provisionBus(bus: Bus, settings: Partial<ProvisionSettings> = {}): Promise<ProvisionSummary> {
  const s = { ...DEFAULT_PROVISION_SETTINGS, ...settings };
  const streams = await bus.ensureStreams();
  const consumers: string[] = [];
  for (const options of Object.values(durableConsumers(bus.subjects, s))) {
    consumers.push((await bus.ensureConsumer(options)).name);
  }
  for (const host of s.deployHosts) {
    consumers.push((await bus.ensureConsumer(deployHostConsumer(bus.subjects, host, s))).name);
  }
  const names = bucketNames(bus.subjects);
  const kvm = new Kvm(bus.js);
  const ttl: Record<BucketKey, number> = {
    buildJobResults: JOB_RESULTS_TTL_MS,
    deployJobResults: JOB_RESULTS_TTL_MS,
    buildLocks: s.buildLockTtlMs,
  };
  for (const key of Object.keys(names) as BucketKey[]) {
    try {
      // An existing bucket is opened as it is (the client never updates one).
      await kvm.create(names[key], { ttl: ttl[key], history: 1, replicas: bus.replicas });
    } catch (e) {
      throw toDomainError(e, `creating key-value bucket ${names[key]}`);
    }
  }
  return { streams: Object.values(streams).map((i) => i.config.name), consumers, buckets: Object.values(names) };
}

const CONSUMER_NOT_FOUND = 10014;
const STREAM_NOT_FOUND = 10059;

/** How to fix a missing object, in every error that finds one. */
export const PROVISION_HINT = 'provision the bus first (bash deploy/dev/stack.sh provision, as the provision identity)';

/**
 * A provisioned durable consumer, looked up and never changed: a running service has no right to.
 * One that differs from what the service would create is used anyway, with a warning.
 */
export async function lookupConsumer(
  jsm: JetStreamManager,
  stream: string,
  config: Partial<ConsumerConfig>,
  log: Logger,
): Promise<ConsumerInfo> {
  const name = config.durable_name ?? '';
  let info: ConsumerInfo;
  try {
    info = await jsm.consumers.info(stream, name);
  } catch (e) {
    const code = jetStreamErrorCode(e);
    if (code === CONSUMER_NOT_FOUND || code === STREAM_NOT_FOUND) {
      throw new DomainError('FAILED_PRECONDITION', `consumer ${stream}/${name} does not exist: ${PROVISION_HINT}`);
    }
    throw toDomainError(e, `looking up consumer ${stream}/${name}`);
  }
  if (differs(info.config, config)) {
    log.warn(
      { stream, consumer: name, provisioned: info.config, wanted: config },
      `the provisioned consumer differs from this service's settings: ${PROVISION_HINT} with the same settings`,
    );
  }
  return info;
}

/** Every stream's info, read-only: the provisioned counterpart of `ensureStreams`. */
export async function lookupStreams(jsm: JetStreamManager, subjects: Subjects): Promise<Record<StreamKey, StreamInfo>> {
  const infos: Partial<Record<StreamKey, StreamInfo>> = {};
  for (const key of STREAM_KEYS) {
    const name = subjects.streams[key];
    try {
      infos[key] = await jsm.streams.info(name);
    } catch (e) {
      if (jetStreamErrorCode(e) === STREAM_NOT_FOUND) {
        throw new DomainError('FAILED_PRECONDITION', `stream ${name} does not exist: ${PROVISION_HINT}`);
      }
      throw toDomainError(e, `looking up stream ${name}`);
    }
  }
  return infos as Record<StreamKey, StreamInfo>;
}
