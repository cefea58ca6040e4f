// Durable pull consumers as code: one per (stream, durable name), created or updated idempotently.
import type { ConsumerConfig, ConsumerInfo, JetStreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { invalidArgument } from '@stageline/errors';
import { jetStreamErrorCode, toDomainError } from './jetstream-errors.ts';
import type { Subjects } from './subjects.ts';

/** Slots per worker process: each process holds at most this many jobs, so adding a process adds slots. */
export const DEFAULT_SLOTS = 7;
/** The largest number of processes expected on one consumer; sizes `max_ack_pending`. */
export const DEFAULT_EXPECTED_PROCESSES = 16;
export const DEFAULT_ACK_WAIT_MS = 30_000;
export const DEFAULT_MAX_DELIVER = 5;
const MAX_REDELIVERY_GAP_MS = 15 * 60_000;

export interface ConsumerSettings {
  /** Logical durable name; the server-side name is `subjects.consumerName(durable)`. */
  durable: string;
  filterSubject?: string;
  ackWaitMs: number;
  /** -1 = unlimited. */
  maxDeliver: number;
  /** Cap for the whole fleet on this consumer: slots × expected processes, never the per-process limit. */
  maxAckPending: number;
  /**
   * Server-side gaps between redeliveries after ack timeouts (crashed or hung workers). Default none:
   * redelivery after ackWaitMs. With a backoff the server replaces ack_wait by backoffMs[0] and
   * shifts every delayed nak by backoff[n] − backoff[0]; the consume loop compensates (see
   * `nakDelayForServer`).
   */
  backoffMs?: readonly number[];
  description?: string;
}

/**
 * A suggested `backoffMs`: ackWait, then doubling, capped; shorter than max_deliver as the server
 * requires. Not the default — see `ConsumerSettings.backoffMs`.
 */
export function redeliveryBackoffMs(ackWaitMs: number, maxDeliver: number): number[] {
  const steps = maxDeliver > 0 ? Math.min(4, maxDeliver - 1) : 4;
  const cap = Math.max(ackWaitMs, MAX_REDELIVERY_GAP_MS);
  return Array.from({ length: steps }, (_, i) => Math.min(ackWaitMs * 2 ** i, cap));
}

const positiveInt = (value: number, field: string): number => {
  if (!Number.isInteger(value) || value < 1) throw invalidArgument(field, `must be a positive integer, got ${value}`);
  return value;
};

/**
 * The delay to send with a nak so the message comes back after `delayMs`. NATS (measured on 2.9.10;
 * the same code is in later servers) backdates a delayed nak by ack_wait but then waits
 * backoff[redeliveries] — so with a backoff the real delay is delayMs + backoff[n] − backoff[0].
 */
export function nakDelayForServer(delayMs: number, deliveryCount: number, backoffMs: readonly number[]): number {
  if (backoffMs.length === 0) return delayMs;
  const index = Math.min(Math.max(0, deliveryCount - 1), backoffMs.length - 1);
  return delayMs + (backoffMs[0] ?? 0) - (backoffMs[index] ?? 0);
}

export function consumerConfig(subjects: Subjects, settings: ConsumerSettings): Partial<ConsumerConfig> {
  positiveInt(settings.ackWaitMs, 'ackWaitMs');
  positiveInt(settings.maxAckPending, 'maxAckPending');
  if (settings.maxDeliver !== -1) positiveInt(settings.maxDeliver, 'maxDeliver');
  const backoffMs = settings.backoffMs ?? [];
  if (settings.maxDeliver > 0 && backoffMs.length >= settings.maxDeliver) {
    throw invalidArgument('backoffMs', `must have fewer entries than maxDeliver (${settings.maxDeliver})`);
  }
  const config: Partial<ConsumerConfig> = {
    durable_name: subjects.consumerName(settings.durable),
    ack_policy: 'explicit',
    deliver_policy: 'all',
    replay_policy: 'instant',
    ack_wait: nanos(settings.ackWaitMs),
    max_deliver: settings.maxDeliver,
    max_ack_pending: settings.maxAckPending,
  };
  if (backoffMs.length > 0) config.backoff = backoffMs.map((ms) => nanos(positiveInt(ms, 'backoffMs')));
  if (settings.filterSubject !== undefined) config.filter_subject = settings.filterSubject;
  if (settings.description !== undefined) config.description = settings.description;
  return config;
}

const CONSUMER_NOT_FOUND = 10014;

async function infoOrNull(jsm: JetStreamManager, stream: string, name: string): Promise<ConsumerInfo | null> {
  try {
    return await jsm.consumers.info(stream, name);
  } catch (e) {
    if (jetStreamErrorCode(e) === CONSUMER_NOT_FOUND) return null;
    throw e;
  }
}

// Fields we own; anything else (e.g. server defaults) is left alone so repeated starts change nothing.
export function differs(current: ConsumerConfig, wanted: Partial<ConsumerConfig>): boolean {
  const backoff = (v: readonly number[] | undefined) => JSON.stringify(v ?? []);
  return (
    (wanted.backoff === undefined ? current.ack_wait !== wanted.ack_wait : false) ||
    current.max_deliver !== wanted.max_deliver ||
    current.max_ack_pending !== wanted.max_ack_pending ||
    backoff(current.backoff) !== backoff(wanted.backoff) ||
    (current.filter_subject ?? '') !== (wanted.filter_subject ?? '') ||
    (wanted.description !== undefined && current.description !== wanted.description)
  );
}

/**
 * Create the durable consumer or bring it to `config`. Two processes starting at once both succeed:
 * an identical create is a no-op on the server, and whoever finds it existing updates it.
 */
export async function ensureConsumer(
  jsm: JetStreamManager,
  stream: string,
  config: Partial<ConsumerConfig>,
): Promise<ConsumerInfo> {
  const name = config.durable_name;
  if (name === undefined) throw invalidArgument('durable_name', 'is required');
  try {
    let existing = await infoOrNull(jsm, stream, name);
    if (existing === null) {
      try {
        return await jsm.consumers.add(stream, config);
      } catch (e) {
        // Lost a race with a different config (servers ≥ 2.10 refuse create-over-existing): update instead.
        existing = await infoOrNull(jsm, stream, name);
        if (existing === null) throw e;
      }
    }
    if (!differs(existing.config, config)) return existing;
    const {
      durable_name: _name,
      ack_policy: _ack,
      deliver_policy: _deliver,
      replay_policy: _replay,
      ...update
    } = config;
    // The client merges the update into the current config: an empty list clears a stale backoff.
    return await jsm.consumers.update(stream, name, { ...update, backoff: update.backoff ?? [] });
  } catch (e) {
    throw toDomainError(e, `ensuring consumer ${stream}/${name}`);
  }
}
