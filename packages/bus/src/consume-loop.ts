// A pull loop with N slots. The process never holds more than `slots` unacknowledged messages:
// each pull asks for exactly the free slots, and the next pull waits for a slot to free. The
// consumer's max_ack_pending is only the fleet-wide ceiling: NATS applies it to all processes together.
import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { type MsgHdrs, headers as natsHeaders } from '@nats-io/transport-node';
import type { Logger } from '@stageline/log';
import {
  contextFromHeaders,
  inSpan,
  metrics,
  SpanKind,
  spanError,
  subjectFamily,
  trackSlots,
} from '@stageline/telemetry';
import { nakDelayForServer } from './consumers.ts';
import { type DeadLetter, deadLetterFor } from './dead-letter.ts';
import { HEADERS } from './headers.ts';
import {
  exhaustedReason,
  type HandlerOutcome,
  outcome,
  outcomeForError,
  type RetryDelay,
  retryDelayMs,
} from './outcomes.ts';

/** One delivery of a message, as a handler sees it. */
export interface BusMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs;
  /** The publisher's `Nats-Msg-Id`, if any. */
  readonly msgId: string | undefined;
  readonly traceparent: string | undefined;
  /** 1 on first delivery. */
  readonly deliveryCount: number;
  readonly streamSequence: number;
  /** Still on it: restarts the ack_wait timer so the message is not redelivered elsewhere. */
  working(): void;
}

// `void` so plain `async function handle(m) { … }` handlers type-check; resolving with nothing means ack.
export type MessageHandler = (
  message: BusMessage,
  // biome-ignore lint/suspicious/noConfusingVoidType: a return type, where void is the honest one
) => Promise<HandlerOutcome | void> | HandlerOutcome | void;

export interface Consumption {
  /** Server-side durable consumer name. */
  readonly consumer: string;
  /** Stop pulling, then wait for the handlers in flight to finish and settle their messages. */
  stop(): Promise<void>;
  /** Messages this process holds right now (handlers running or settling). */
  inFlight(): number;
}

export interface ConsumeLoopDependencies {
  /** Ensure the durable consumer exists with our config and return a handle to pull from. */
  openConsumer(): Promise<Consumer>;
  publishDeadLetter(letter: DeadLetter): Promise<void>;
  dlqSubject(originalSubject: string): string;
  log: Logger;
}

export interface ConsumeLoopSettings {
  stream: string;
  consumer: string;
  slots: number;
  maxDeliver: number;
  /** The consumer's server-side backoff (ms), which shifts delayed naks. */
  backoffMs: readonly number[];
  retryDelay: RetryDelay;
  /** How long one pull waits on the server for messages (≥ 1000 ms). */
  pullExpiresMs: number;
  handler: MessageHandler;
}

const isOutcome = (v: unknown): v is HandlerOutcome =>
  v !== null &&
  typeof v === 'object' &&
  (('ack' in v && (v as { ack: unknown }).ack === true) ||
    ('retry' in v && typeof (v as { retry: { delayMs?: unknown } }).retry?.delayMs === 'number') ||
    ('reject' in v && typeof (v as { reject: { reason?: unknown } }).reject?.reason === 'string') ||
    ('leave' in v && typeof (v as { leave: { reason?: unknown } }).leave?.reason === 'string'));

export class ConsumeLoop implements Consumption {
  readonly consumer: string;
  readonly #deps: ConsumeLoopDependencies;
  readonly #settings: ConsumeLoopSettings;
  readonly #log: Logger;
  readonly #handlers = new Set<Promise<void>>();
  #active = 0;
  #stopping = false;
  #batch: ConsumerMessages | undefined;
  #running: Promise<void> | undefined;
  #slotWaiter: (() => void) | undefined;
  #sleepWaker: (() => void) | undefined;
  #untrack: (() => void) | undefined;

  constructor(deps: ConsumeLoopDependencies, settings: ConsumeLoopSettings) {
    this.#deps = deps;
    this.#settings = settings;
    this.consumer = settings.consumer;
    this.#log = deps.log.child({ stream: settings.stream, consumer: settings.consumer });
  }

  start(): this {
    if (this.#running === undefined) {
      this.#running = this.#run();
      this.#untrack = trackSlots(this);
    }
    return this;
  }

  /** This loop's slots, for the `stageline_worker_slots` gauge. */
  slots(): { busy: number; free: number } {
    return { busy: this.#active, free: Math.max(0, this.#settings.slots - this.#active) };
  }

  inFlight(): number {
    return this.#active;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#untrack?.();
    this.#slotWaiter?.();
    this.#sleepWaker?.();
    // Closing the open pull ends it now rather than after `pullExpiresMs`; a message the server
    // sends in that instant is redelivered after ack_wait (handlers are idempotent).
    if (this.#batch !== undefined) void this.#batch.close().catch(() => undefined);
    await this.#running;
    await Promise.all([...this.#handlers]);
  }

  async #run(): Promise<void> {
    let consumer: Consumer | undefined;
    let failures = 0;
    while (!this.#stopping) {
      await this.#slotFree();
      if (this.#stopping) break;
      const started = Date.now();
      let received = 0;
      try {
        consumer ??= await this.#deps.openConsumer();
        if (this.#stopping) break;
        const free = this.#settings.slots - this.#active;
        const batch = await consumer.fetch({ max_messages: free, expires: this.#settings.pullExpiresMs });
        this.#batch = batch;
        if (this.#stopping) void batch.close().catch(() => undefined);
        for await (const m of batch) {
          received++;
          this.#dispatch(m);
        }
        failures = 0;
      } catch (e) {
        if (this.#stopping) break;
        // Consumer or stream gone, disconnected, …: reopen (re-ensuring the consumer) after a pause.
        consumer = undefined;
        failures++;
        const pauseMs = Math.min(30_000, 250 * 2 ** Math.min(failures, 7));
        this.#log.warn({ err: e, failures, pauseMs }, 'bus pull failed; retrying');
        await this.#sleep(pauseMs);
        continue;
      } finally {
        this.#batch = undefined;
      }
      // A pull that ends at once with nothing (server refusing without an error) must not spin.
      if (received === 0 && Date.now() - started < 500) await this.#sleep(1_000);
    }
  }

  #dispatch(m: JsMsg): void {
    if (this.#stopping) {
      // Received while stopping: hand it straight back so another process can take it.
      m.nak();
      return;
    }
    this.#active++;
    const settled = this.#handle(m).finally(() => {
      this.#active--;
      this.#handlers.delete(settled);
      this.#slotWaiter?.();
    });
    this.#handlers.add(settled);
  }

  async #handle(m: JsMsg): Promise<void> {
    const { deliveryCount } = m.info;
    if (deliveryCount > 1) metrics.busRedeliveries.inc({ consumer: this.consumer });
    // One consumer span per delivery, child of the publisher's span (W3C trace context in the headers).
    const headers = m.headers;
    const parent = contextFromHeaders((name) => (headers?.has(name) ? headers.get(name) : undefined));
    const attributes = {
      'messaging.system': 'nats',
      'messaging.operation.type': 'process',
      'messaging.destination.name': m.subject,
      'messaging.consumer.group.name': this.consumer,
      'messaging.message.delivery_count': deliveryCount,
    };
    await inSpan(`process ${subjectFamily(m.subject)}`, { kind: SpanKind.CONSUMER, parent, attributes }, (span) =>
      this.#handleInSpan(m, (outcome, reason) => {
        span.setAttribute('stageline.outcome', outcome);
        if (reason !== undefined) spanError(span, reason);
      }),
    );
  }

  async #handleInSpan(m: JsMsg, traced: (outcome: string, reason?: string) => void): Promise<void> {
    const { deliveryCount, streamSequence } = m.info;
    const log = this.#log.child({ subject: m.subject, streamSequence, deliveryCount });
    try {
      let decided: HandlerOutcome;
      let failure: unknown;
      try {
        const result = await this.#settings.handler(toBusMessage(m));
        if (result === undefined) decided = outcome.ack();
        else if (isOutcome(result)) decided = result;
        else {
          failure = new TypeError(`handler returned an unrecognised outcome: ${JSON.stringify(result)}`);
          decided = outcomeForError(failure, deliveryCount, this.#settings.retryDelay);
        }
      } catch (e) {
        failure = e;
        decided = outcomeForError(e, deliveryCount, this.#settings.retryDelay);
        log.warn({ err: e, outcome: decided }, 'bus handler failed');
      }
      const { maxDeliver } = this.#settings;
      // Past max_deliver the server would silently stop redelivering: dead-letter instead.
      if ('retry' in decided && maxDeliver > 0 && deliveryCount >= maxDeliver) {
        decided = outcome.reject(exhaustedReason(deliveryCount, failure ?? decided));
      }
      if ('reject' in decided) traced('dead_letter', decided.reject.reason);
      else if ('retry' in decided) traced('retry', failure instanceof Error ? failure.message : 'retried');
      else traced('ack' in decided ? 'ack' : 'left');
      await this.#settle(m, decided, log);
    } catch (e) {
      // Never let one message take the loop down; the server redelivers it after ack_wait.
      log.error({ err: e }, 'bus message handling failed unexpectedly');
    }
  }

  async #settle(m: JsMsg, decided: HandlerOutcome, log: Logger): Promise<void> {
    const settled = (outcome: 'ack' | 'left' | 'retry' | 'dead_letter') =>
      metrics.busConsumed.inc({ consumer: this.consumer, outcome });
    if ('ack' in decided) {
      settled('ack');
      // A plain ack, not awaited (no reply, no round trip per message): the slot frees at once. What a
      // confirmed ack would add is a log line — an ack lost on the way is redelivered after ack_wait
      // either way, and every handler takes a redelivery (work done is recognised by its id or sequence).
      // One connection keeps order: the server has the ack before this loop's next pull.
      m.ack();
      return;
    }
    if ('leave' in decided) {
      settled('left');
      log.info({ reason: decided.leave.reason }, 'bus message left alone: a newer delivery of it is live');
      return;
    }
    if ('retry' in decided) {
      settled('retry');
      log.debug({ delayMs: decided.retry.delayMs }, 'bus message retried');
      this.#nak(m, decided.retry.delayMs);
      return;
    }
    const reason = decided.reject.reason;
    try {
      const letter = deadLetterFor(m, reason, {
        dlqSubject: this.#deps.dlqSubject(m.subject),
        stream: this.#settings.stream,
        consumer: this.#settings.consumer,
      });
      await this.#deps.publishDeadLetter(letter);
    } catch (e) {
      // Never drop a message we could not dead-letter: try again later.
      const delayMs = retryDelayMs(m.info.deliveryCount, this.#settings.retryDelay);
      log.error({ err: e, reason, delayMs }, 'bus dead-lettering failed; message will be retried');
      this.#nak(m, delayMs);
      return;
    }
    settled('dead_letter');
    metrics.deadLetters.inc({ consumer: this.consumer });
    log.warn({ reason }, 'bus message dead-lettered');
    m.term();
  }

  #nak(m: JsMsg, delayMs: number): void {
    const wanted = Math.max(0, Math.round(delayMs));
    if (wanted === 0) {
      m.nak(); // a bare nak is immediate on every server, backoff or not
      return;
    }
    const sent = nakDelayForServer(wanted, m.info.deliveryCount, this.#settings.backoffMs);
    // The client sends a bare nak for 0; keep it a delayed one so the server's arithmetic applies.
    m.nak(sent === 0 ? -1 : sent);
  }

  async #slotFree(): Promise<void> {
    while (!this.#stopping && this.#active >= this.#settings.slots) {
      await new Promise<void>((resolve) => {
        this.#slotWaiter = resolve;
      });
      this.#slotWaiter = undefined;
    }
  }

  async #sleep(ms: number): Promise<void> {
    if (this.#stopping) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#sleepWaker = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#sleepWaker = undefined;
  }
}

function toBusMessage(m: JsMsg): BusMessage {
  const headers = m.headers ?? natsHeaders();
  const header = (name: string): string | undefined => (headers.has(name) ? headers.get(name) : undefined);
  return {
    subject: m.subject,
    data: m.data,
    headers,
    msgId: header(HEADERS.msgId),
    traceparent: header(HEADERS.traceparent),
    deliveryCount: m.info.deliveryCount,
    streamSequence: m.info.streamSequence,
    working: () => m.working(),
  };
}
