// The connection every Stageline service holds: publish, streams/consumers as code, consume loops.
import {
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamClient,
  type JetStreamManager,
  type JetStreamPublishOptions,
  jetstream,
  jetstreamManager,
  type StreamInfo,
} from '@nats-io/jetstream';
import { connect, type NatsConnection, type Status } from '@nats-io/transport-node';
import { invalidArgument } from '@stageline/errors';
import type { Logger } from '@stageline/log';
import { metrics, subjectFamily, traceHeaders } from '@stageline/telemetry';
import { type BusCredentials, inboxPrefixFor, readBusCredentials } from './auth.ts';
import { ConsumeLoop, type Consumption, type MessageHandler } from './consume-loop.ts';
import {
  type ConsumerSettings,
  consumerConfig,
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_EXPECTED_PROCESSES,
  DEFAULT_MAX_DELIVER,
  DEFAULT_SLOTS,
  ensureConsumer,
} from './consumers.ts';
import { HEADERS, headerValue, toNatsHeaders } from './headers.ts';
import { toDomainError } from './jetstream-errors.ts';
import { DEFAULT_RETRY_DELAY, type RetryDelay } from './outcomes.ts';
import { lookupConsumer, lookupStreams } from './provision.ts';
import { ensureStreams, type StreamLimits, streamReplicasFromEnv } from './streams.ts';
import { busPrefixFromEnv, createSubjects, type StreamKey, type Subjects, validateSubject } from './subjects.ts';

export interface BusConnectOptions {
  /**
   * NATS server URL(s): `nats://127.0.0.1:4222`, a comma-separated list (`NATS_URL` of a cluster:
   * `nats://a:4222,nats://b:4222,nats://c:4222`) or an array. The client connects to any one of them,
   * learns the rest of the cluster from it, and moves to another when its server goes away.
   */
  url: string | readonly string[];
  /** Subject prefix; default from `STAGELINE_BUS_PREFIX`, else `stageline`. */
  prefix?: string;
  /** Connection name shown by the server (e.g. `stageline-build`). */
  name: string;
  log: Logger;
  /** Pause between reconnect attempts; reconnecting never gives up. Default 2000. */
  reconnectTimeWaitMs?: number;
  /**
   * Client pings every this long; two unanswered ones close the connection and the client moves to
   * another server of `url`. Default 10 000: a server cut off from the network (no reset, packets just
   * dropped) is left within about 20–30 s instead of the client's default 4 minutes.
   */
  pingIntervalMs?: number;
  /** Keep trying when the server is down at start too, instead of failing fast. Default false. */
  waitOnFirstConnect?: boolean;
  /** Overrides for stream limits (max ages, log bytes, duplicate window, replicas; replicas default to `STAGELINE_STREAM_REPLICAS`). */
  streamLimits?: Partial<StreamLimits>;
  /**
   * An authenticated bus: `{"user", "password"}` read from this file (`STAGELINE_NATS_CREDENTIALS`),
   * replies on the user's own inbox prefix, and `provisioned` unless said otherwise.
   */
  credentialsFile?: string | undefined;
  credentials?: BusCredentials | undefined;
  /**
   * Streams, consumers and buckets are provisioned apart (provision.ts): only look them up, never
   * create or change them. Default: true with credentials, false without.
   */
  provisioned?: boolean;
}

export interface PublishOptions {
  /** Becomes `Nats-Msg-Id`: the stream drops a repeat within its duplicate window. */
  msgId?: string;
  /** W3C trace context carried to consumers; default the active span's (none with tracing off). */
  traceparent?: string;
  tracestate?: string;
  headers?: Readonly<Record<string, string>>;
}

export interface PublishResult {
  stream: string;
  seq: number;
  /** True when the stream already had this msgId: nothing new was stored. */
  duplicate: boolean;
}

export interface ConsumerOptions {
  stream: StreamKey;
  /** Logical durable name, shared by every process of one consumer group (e.g. `build-workers`). */
  durable: string;
  filterSubject?: string;
  /** Messages one process holds at most. Default 7. */
  slots?: number;
  /** Fleet-wide cap on the consumer. Default slots × expectedProcesses. */
  maxAckPending?: number;
  /** Default 16. */
  expectedProcesses?: number;
  /** Default 30 s; long handlers call `working()`. */
  ackWaitMs?: number;
  /** Default 5; -1 for unlimited. Failures at this count are dead-lettered. */
  maxDeliver?: number;
  /** Server-side redelivery gaps after ack timeouts; default none (see README). */
  backoffMs?: readonly number[];
  description?: string;
}

export interface ConsumeOptions extends ConsumerOptions {
  handler: MessageHandler;
  /** Delay of retries decided from thrown errors. Default 1 s doubling to 60 s. */
  retryDelay?: RetryDelay;
  /** How long one pull waits on the server. Default 10 s (min 1 s). */
  pullExpiresMs?: number;
}

interface BusParts {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  subjects: Subjects;
  log: Logger;
  streamLimits: Partial<StreamLimits>;
  provisioned: boolean;
  user: string | undefined;
}

export class Bus {
  readonly subjects: Subjects;
  readonly prefix: string;
  /** The bus user this connection authenticated as; undefined on an anonymous bus. */
  readonly user: string | undefined;
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #log: Logger;
  readonly #streamLimits: Partial<StreamLimits>;
  readonly #provisioned: boolean;
  readonly #loops = new Set<ConsumeLoop>();
  #closing: Promise<void> | undefined;

  private constructor(parts: BusParts) {
    this.#nc = parts.nc;
    this.#js = parts.js;
    this.#jsm = parts.jsm;
    this.subjects = parts.subjects;
    this.prefix = parts.subjects.prefix;
    this.#log = parts.log;
    this.#streamLimits = parts.streamLimits;
    this.#provisioned = parts.provisioned;
    this.user = parts.user;
  }

  static async connect(options: BusConnectOptions): Promise<Bus> {
    // Validate before connecting so a bad prefix fails fast with the field named.
    const subjects = createSubjects(options.prefix ?? busPrefixFromEnv());
    const log = options.log.child({ component: 'bus', busPrefix: subjects.prefix });
    const servers = natsServers(options.url);
    const streamLimits: Partial<StreamLimits> = { replicas: streamReplicasFromEnv(), ...options.streamLimits };
    const credentials =
      options.credentials ??
      (options.credentialsFile === undefined ? undefined : await readBusCredentials(options.credentialsFile));
    const provisioned = options.provisioned ?? credentials !== undefined;
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers,
        name: options.name,
        ...(credentials === undefined
          ? {}
          : { user: credentials.user, pass: credentials.password, inboxPrefix: inboxPrefixFor(credentials.user) }),
        maxReconnectAttempts: -1,
        reconnectTimeWait: options.reconnectTimeWaitMs ?? 2_000,
        pingInterval: options.pingIntervalMs ?? 10_000,
        maxPingOut: 2,
        waitOnFirstConnect: options.waitOnFirstConnect ?? false,
        // Otherwise every request (each JetStream publish, KV read, confirmed ack) builds a RequestError
        // and a TimeoutError up front, stack traces included, in case it fails: ~3 % of a busy planner's
        // CPU. Errors still say what failed; callers add where (toDomainError's context).
        noAsyncTraces: true,
      });
    } catch (e) {
      throw toDomainError(e, `connecting to NATS at ${String(servers)}`);
    }
    logStatus(nc, log);
    try {
      const jsm = await jetstreamManager(nc);
      const bus = new Bus({
        nc,
        js: jetstream(nc),
        jsm,
        subjects,
        log,
        streamLimits,
        provisioned,
        user: credentials?.user,
      });
      log.info({ server: nc.getServer(), name: options.name, user: credentials?.user, provisioned }, 'bus connected');
      return bus;
    } catch (e) {
      await nc.close();
      throw toDomainError(e, 'opening JetStream');
    }
  }

  /** Copies of each stream and key-value bucket this connection makes (`STAGELINE_STREAM_REPLICAS`). */
  get replicas(): number {
    return this.#streamLimits.replicas ?? 1;
  }

  /** Raw connection, for what this package does not wrap (request/reply, KV, ephemeral consumers). */
  get nc(): NatsConnection {
    return this.#nc;
  }
  get js(): JetStreamClient {
    return this.#js;
  }
  get jsm(): JetStreamManager {
    return this.#jsm;
  }

  /**
   * Create or update all seven streams; idempotent, safe from several processes at once. On a
   * provisioned bus, only looks them up (a missing one is FAILED_PRECONDITION).
   */
  async ensureStreams(): Promise<Record<StreamKey, StreamInfo>> {
    if (this.#provisioned) return await lookupStreams(this.#jsm, this.subjects);
    return await ensureStreams(this.#jsm, this.subjects, this.#streamLimits);
  }

  /** Create or update the durable pull consumer described by `options`; idempotent. Provisioned: look it up. */
  async ensureConsumer(options: ConsumerOptions): Promise<ConsumerInfo> {
    return await this.#ensureConsumer(this.subjects.streams[options.stream], this.#consumerConfig(options));
  }

  #ensureConsumer(stream: string, config: Partial<ConsumerConfig>): Promise<ConsumerInfo> {
    return this.#provisioned
      ? lookupConsumer(this.#jsm, stream, config, this.#log)
      : ensureConsumer(this.#jsm, stream, config);
  }

  async publish(subject: string, data: Uint8Array, options: PublishOptions = {}): Promise<PublishResult> {
    validateSubject(subject);
    // The active span's trace context, unless the caller carries one (an outbox row keeps its writer's).
    const carried = options.traceparent ?? options.headers?.[HEADERS.traceparent];
    const values: Record<string, string> = { ...(carried === undefined ? traceHeaders() : {}), ...options.headers };
    if (options.traceparent !== undefined) values[HEADERS.traceparent] = options.traceparent;
    if (options.tracestate !== undefined) values[HEADERS.tracestate] = options.tracestate;
    const publishOptions: Partial<JetStreamPublishOptions> = { headers: toNatsHeaders(values) };
    if (options.msgId !== undefined) {
      if (options.msgId === '' || headerValue(options.msgId) !== options.msgId) {
        throw invalidArgument('msgId', 'must be non-empty, without line breaks or surrounding spaces');
      }
      publishOptions.msgID = options.msgId;
    }
    return await this.#publish(subject, data, publishOptions);
  }

  async #publish(subject: string, data: Uint8Array, options: Partial<JetStreamPublishOptions>): Promise<PublishResult> {
    try {
      const ack = await this.#js.publish(subject, data, options);
      metrics.busPublished.inc({ subject: subjectFamily(subject) });
      return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
    } catch (e) {
      throw toDomainError(e, `publishing to ${subject}`);
    }
  }

  /**
   * Run `handler` on the messages of a durable consumer, at most `slots` at a time in this process.
   * Ensures the consumer first; returns once pulling has started.
   */
  async consume(options: ConsumeOptions): Promise<Consumption> {
    if (this.#closing !== undefined) throw new Error('bus is closing');
    const slots = options.slots ?? DEFAULT_SLOTS;
    const pullExpiresMs = options.pullExpiresMs ?? 10_000;
    if (!Number.isInteger(slots) || slots < 1)
      throw invalidArgument('slots', `must be a positive integer, got ${slots}`);
    if (!Number.isFinite(pullExpiresMs) || pullExpiresMs < 1_000) {
      throw invalidArgument('pullExpiresMs', 'must be at least 1000');
    }
    const retryDelay = options.retryDelay ?? DEFAULT_RETRY_DELAY;
    if (!(retryDelay.baseMs >= 0 && retryDelay.maxMs >= retryDelay.baseMs)) {
      throw invalidArgument('retryDelay', 'needs 0 ≤ baseMs ≤ maxMs');
    }
    const stream = this.subjects.streams[options.stream];
    const config = this.#consumerConfig(options);
    const consumerName = config.durable_name ?? '';
    // Fail fast on a bad config at start; afterwards the loop re-ensures it if it disappears.
    await this.#ensureConsumer(stream, config);
    let ensured = true;
    const loop = new ConsumeLoop(
      {
        openConsumer: async () => {
          // Reopening after a failure: the consumer may have been deleted under us.
          if (!ensured) await this.#ensureConsumer(stream, config);
          ensured = false;
          return await this.#js.consumers.get(stream, consumerName);
        },
        publishDeadLetter: async (letter) => {
          await this.#publish(letter.subject, letter.data, { headers: letter.headers, msgID: letter.msgId });
        },
        dlqSubject: (subject) => this.subjects.dlq(subject),
        log: this.#log,
      },
      {
        stream,
        consumer: consumerName,
        slots,
        maxDeliver: config.max_deliver ?? DEFAULT_MAX_DELIVER,
        backoffMs: (config.backoff ?? []).map((ns) => ns / 1_000_000),
        retryDelay,
        pullExpiresMs,
        handler: options.handler,
      },
    );
    this.#loops.add(loop);
    loop.start();
    return {
      consumer: loop.consumer,
      inFlight: () => loop.inFlight(),
      stop: async () => {
        await loop.stop();
        this.#loops.delete(loop);
      },
    };
  }

  /** Stop every consume loop (waiting for handlers in flight), then drain the connection. */
  async close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([...this.#loops].map((l) => l.stop()));
      this.#loops.clear();
      if (!this.#nc.isClosed()) await this.#nc.drain();
      this.#log.info('bus closed');
    })();
    await this.#closing;
  }

  #consumerConfig(options: ConsumerOptions) {
    const slots = options.slots ?? DEFAULT_SLOTS;
    const settings: ConsumerSettings = {
      durable: options.durable,
      ackWaitMs: options.ackWaitMs ?? DEFAULT_ACK_WAIT_MS,
      maxDeliver: options.maxDeliver ?? DEFAULT_MAX_DELIVER,
      maxAckPending: options.maxAckPending ?? slots * (options.expectedProcesses ?? DEFAULT_EXPECTED_PROCESSES),
    };
    if (options.filterSubject !== undefined) settings.filterSubject = options.filterSubject;
    if (options.backoffMs !== undefined) settings.backoffMs = options.backoffMs;
    if (options.description !== undefined) settings.description = options.description;
    return consumerConfig(this.subjects, settings);
  }
}

/**
 * The servers of `NATS_URL`: one URL or a comma-separated list (blanks around commas ignored), each
 * `nats://` or `tls://`. An empty list or entry is INVALID_ARGUMENT naming `NATS_URL`.
 */
export function natsServers(url: string | readonly string[]): string[] {
  const list = (typeof url === 'string' ? url.split(',') : [...url]).map((s) => s.trim());
  if (list.length === 0 || list.some((s) => s === '')) {
    throw invalidArgument('NATS_URL', 'expected a URL or a comma-separated list of URLs, with no empty entry');
  }
  for (const server of list) {
    let protocol: string;
    try {
      protocol = new URL(server).protocol;
    } catch {
      throw invalidArgument('NATS_URL', 'an entry is not a valid URL');
    }
    if (protocol !== 'nats:' && protocol !== 'tls:') {
      throw invalidArgument('NATS_URL', `expected nats:// or tls:// URLs, got "${protocol}"`);
    }
  }
  return list;
}

function logStatus(nc: NatsConnection, log: Logger): void {
  void (async () => {
    for await (const s of nc.status()) logOne(s, log);
  })().catch((e: unknown) => log.debug({ err: e }, 'bus status stream ended'));
  void nc.closed().then((err) => {
    if (err) log.error({ err }, 'bus connection closed with an error');
  });
}

function logOne(s: Status, log: Logger): void {
  switch (s.type) {
    case 'disconnect':
      log.warn({ server: s.server }, 'bus disconnected; reconnecting');
      return;
    case 'reconnect':
      log.info({ server: s.server }, 'bus reconnected');
      return;
    case 'reconnecting':
      log.debug('bus reconnecting');
      return;
    case 'error':
      log.error({ err: s.error }, 'bus connection error');
      return;
    case 'staleConnection':
      log.warn('bus connection stale');
      return;
    case 'slowConsumer':
      log.warn({ pending: s.pending }, 'bus slow consumer');
      return;
    case 'ldm':
      log.info({ server: s.server }, 'bus server entering lame duck mode');
      return;
    case 'update':
    case 'ping':
    case 'forceReconnect':
    case 'close':
      log.debug({ status: s.type }, 'bus status');
      return;
    default: {
      const unreachable: never = s;
      log.debug({ status: unreachable }, 'bus status');
    }
  }
}
