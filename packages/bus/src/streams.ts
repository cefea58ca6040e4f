// Streams as code (listed in the root README.md). `ensureStreams` converges the server on these configs
// at start.
import type { JetStreamManager, StreamConfig, StreamInfo } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { invalidArgument } from '@stageline/errors';
import { jetStreamErrorCode, toDomainError } from './jetstream-errors.ts';
import { STREAM_KEYS, type StreamKey, type Subjects } from './subjects.ts';

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

export interface StreamLimits {
  /** Window in which a repeated `Nats-Msg-Id` is dropped as a duplicate. */
  duplicateWindowMs: number;
  requestsMaxAgeMs: number;
  resultsMaxAgeMs: number;
  eventsMaxAgeMs: number;
  logsMaxAgeMs: number;
  logsMaxBytes: number;
  dlqMaxAgeMs: number;
  /** 1 on a single server; 3 on a cluster. */
  replicas: number;
}

export const DEFAULT_STREAM_LIMITS: Readonly<StreamLimits> = {
  // The outbox relay republishes unacknowledged rows within seconds; two minutes covers restarts.
  duplicateWindowMs: 2 * MINUTE,
  requestsMaxAgeMs: 30 * DAY,
  resultsMaxAgeMs: 30 * DAY,
  eventsMaxAgeMs: 7 * DAY,
  logsMaxAgeMs: 7 * DAY,
  logsMaxBytes: 1024 ** 3,
  dlqMaxAgeMs: 30 * DAY,
  replicas: 1,
};

export type StreamDefinition = Pick<
  StreamConfig,
  | 'name'
  | 'description'
  | 'subjects'
  | 'retention'
  | 'storage'
  | 'discard'
  | 'max_age'
  | 'max_bytes'
  | 'duplicate_window'
  | 'num_replicas'
>;

/** `STAGELINE_STREAM_REPLICAS`: copies of every stream and bucket (1 on one server, 3 on a cluster). */
export const STREAM_REPLICAS_ENV = 'STAGELINE_STREAM_REPLICAS';

/**
 * The replicas `STAGELINE_STREAM_REPLICAS` asks for: 1 when unset, else 1 to 5 (JetStream's limit; a
 * count above the cluster's servers is refused by the server when the stream is made).
 */
export function streamReplicasFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const raw = env[STREAM_REPLICAS_ENV]?.trim();
  if (raw === undefined || raw === '') return DEFAULT_STREAM_LIMITS.replicas;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > 5) {
    throw invalidArgument(STREAM_REPLICAS_ENV, `expected an integer in 1-5, got "${raw}"`);
  }
  return n;
}

/** The seven stream configs for one prefix. Durations are nanoseconds, as the JetStream API wants. */
export function streamConfigs(
  subjects: Subjects,
  limits: Partial<StreamLimits> = {},
): Readonly<Record<StreamKey, StreamDefinition>> {
  const l: StreamLimits = { ...DEFAULT_STREAM_LIMITS, ...limits };
  const base = (key: StreamKey, description: string, maxAgeMs: number): StreamDefinition => ({
    name: subjects.streams[key],
    description,
    subjects: [...subjects.streamSubjects[key]],
    retention: 'limits',
    storage: 'file',
    discard: 'old',
    max_age: nanos(maxAgeMs),
    max_bytes: -1,
    duplicate_window: nanos(l.duplicateWindowMs),
    num_replicas: l.replicas,
  });
  return {
    requests: base('requests', 'Stageline action requests (control, tools -> planner)', l.requestsMaxAgeMs),
    // Work queues: a job is removed once a worker acknowledges it; max_age 0 = kept until done.
    buildJobs: { ...base('buildJobs', 'Stageline build jobs (planner -> build workers)', 0), retention: 'workqueue' },
    deployJobs: {
      ...base('deployJobs', 'Stageline deploy jobs (planner -> deploy workers)', 0),
      retention: 'workqueue',
    },
    results: base('results', 'Stageline build/deploy results (workers -> planner)', l.resultsMaxAgeMs),
    events: base('events', 'Stageline environment and run events', l.eventsMaxAgeMs),
    logs: { ...base('logs', 'Stageline build/deploy logs', l.logsMaxAgeMs), max_bytes: l.logsMaxBytes },
    dlq: base('dlq', 'Stageline dead letters (header Stageline-Dlq-Reason)', l.dlqMaxAgeMs),
  };
}

/** JetStream API error code: "stream name already in use with a different configuration". */
const STREAM_NAME_IN_USE = 10058;

/**
 * Create the stream, or bring an existing one to `config`. Safe to run twice and from several
 * processes at once: an identical `add` is a no-op on the server, and a losing racer updates.
 */
export async function ensureStream(jsm: JetStreamManager, config: StreamDefinition): Promise<StreamInfo> {
  try {
    return await jsm.streams.add({ ...config, subjects: [...(config.subjects ?? [])] });
  } catch (e) {
    if (jetStreamErrorCode(e) !== STREAM_NAME_IN_USE) throw toDomainError(e, `creating stream ${config.name}`);
  }
  try {
    return await jsm.streams.update(config.name, { ...config, subjects: [...(config.subjects ?? [])] });
  } catch (e) {
    // e.g. retention or storage cannot change in place: an operator has to migrate the stream.
    throw toDomainError(e, `updating stream ${config.name}`);
  }
}

export async function ensureStreams(
  jsm: JetStreamManager,
  subjects: Subjects,
  limits: Partial<StreamLimits> = {},
): Promise<Record<StreamKey, StreamInfo>> {
  const configs = streamConfigs(subjects, limits);
  const infos = await Promise.all(STREAM_KEYS.map(async (k) => [k, await ensureStream(jsm, configs[k])] as const));
  return Object.fromEntries(infos) as Record<StreamKey, StreamInfo>;
}
