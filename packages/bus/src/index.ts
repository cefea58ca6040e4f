// @stageline/bus: the NATS JetStream layer of every Stageline service. Its subjects and streams, who
// publishes and who consumes them: the root README.md.
export type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
export type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
export {
  BUS_IDENTITIES,
  type BusCredentials,
  type BusIdentity,
  type BusPermissions,
  busPermissions,
  inboxPrefixFor,
  REQUESTS_IDENTITY,
  readBusCredentials,
} from './auth.ts';
export {
  Bus,
  type BusConnectOptions,
  type ConsumeOptions,
  type ConsumerOptions,
  natsServers,
  type PublishOptions,
  type PublishResult,
} from './bus.ts';
export type { BusMessage, Consumption, MessageHandler } from './consume-loop.ts';
export {
  type ConsumerSettings,
  consumerConfig,
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_EXPECTED_PROCESSES,
  DEFAULT_MAX_DELIVER,
  DEFAULT_SLOTS,
  ensureConsumer,
  nakDelayForServer,
  redeliveryBackoffMs,
} from './consumers.ts';
export { HEADERS } from './headers.ts';
export { coalesceJobEvents, decodeJobEvents, jobEventsOf } from './job-events.ts';
export { KeyedBatches } from './keyed-batches.ts';
export {
  type NatsClusterBlock,
  type NatsClusterNode,
  type NatsClusterOptions,
  type NatsServerConfigOptions,
  natsClusterConfigs,
  natsServerConfig,
  STAGELINE_ACCOUNT,
} from './nats-config.ts';
export { busUserFile, ensureBusUsers, ensureRouteUser, writeNatsServerConfig } from './nats-files.ts';
export {
  type AckOutcome,
  DEFAULT_RETRY_DELAY,
  type HandlerOutcome,
  type LeaveOutcome,
  outcome,
  outcomeForError,
  type RejectOutcome,
  type RetryDelay,
  type RetryOutcome,
  retryDelayMs,
} from './outcomes.ts';
export {
  type BucketKey,
  bucketNames,
  DEFAULT_PROVISION_SETTINGS,
  type DurableName,
  deployHostConsumer,
  durableConsumers,
  PROVISION_HINT,
  type ProvisionSettings,
  type ProvisionSummary,
  provisionBus,
} from './provision.ts';
export {
  DEFAULT_STREAM_LIMITS,
  ensureStreams,
  STREAM_REPLICAS_ENV,
  type StreamDefinition,
  type StreamLimits,
  streamConfigs,
  streamReplicasFromEnv,
} from './streams.ts';
export {
  BUS_PREFIX_ENV,
  busPrefixFromEnv,
  createSubjects,
  DEFAULT_BUS_PREFIX,
  STREAM_KEYS,
  type StreamKey,
  type SubjectFilters,
  type Subjects,
  validateDeployHost,
  validateSubject,
  validateToken,
} from './subjects.ts';
export {
  cancelSubject,
  DEFAULT_WORKER_ACK_WAIT_MS,
  isWorkerStopping,
  type JobContext,
  type JobIdentity,
  LeaseLost,
  publishCancel,
  startWorker,
  type Worker,
  type WorkerOptions,
  type WorkerRole,
  WorkerStopping,
} from './worker.ts';
