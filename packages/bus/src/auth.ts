// Who may do what on an authenticated bus: one NATS user per Stageline identity, each with an allow
// list of the subjects it publishes and subscribes to — its own subjects, and of the JetStream API
// only what its consumers and buckets need. Everything else is refused by the server. The README's
// Security section lists the same rules in prose; the server configuration is made from these lists
// (nats-config.ts), so the two cannot drift.
import { readFile } from 'node:fs/promises';
import { DomainError } from '@stageline/errors';
import { bucketNames, durableConsumers } from './provision.ts';
import type { StreamKey, Subjects } from './subjects.ts';

export type BusIdentity = 'control' | 'planner' | 'build' | 'deploy' | 'requests' | 'provision';
export const BUS_IDENTITIES: readonly BusIdentity[] = [
  'control',
  'planner',
  'build',
  'deploy',
  'requests',
  'provision',
];

/** The identity tools publish `ActionRequested` as; the only one allowed to. */
export const REQUESTS_IDENTITY: BusIdentity = 'requests';

export interface BusPermissions {
  publish: string[];
  subscribe: string[];
}

export interface BusCredentials {
  user: string;
  password: string;
}

const API = '$JS.API';

/**
 * Replies (JetStream acks, pulled messages, API answers) come to `_INBOX.<user>.…`: each user may
 * subscribe to its own inboxes only, so none can read what the server delivers to another.
 */
export const inboxPrefixFor = (user: string): string => `_INBOX.${user}`;

/** Read `{"user": …, "password": …}` (what set-up writes to `$STAGELINE_STATE/nats/users/<identity>.json`). */
export async function readBusCredentials(file: string): Promise<BusCredentials> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    // Never echo the content: it is a password.
    const reason = (e as NodeJS.ErrnoException).code ?? (e instanceof SyntaxError ? 'not JSON' : 'unreadable');
    throw new DomainError('FAILED_PRECONDITION', `bus credentials ${file}: ${reason}`);
  }
  const { user, password } = (parsed ?? {}) as Record<string, unknown>;
  if (typeof user !== 'string' || user === '' || typeof password !== 'string' || password === '') {
    throw new DomainError('FAILED_PRECONDITION', `bus credentials ${file}: needs {"user": …, "password": …}`);
  }
  return { user, password };
}

/** Pull, look up and acknowledge one durable consumer (never create or change it). */
function durableRights(subjects: Subjects, stream: StreamKey, durable: string): string[] {
  const s = subjects.streams[stream];
  const c = subjects.consumerName(durable);
  return [`${API}.CONSUMER.INFO.${s}.${c}`, `${API}.CONSUMER.MSG.NEXT.${s}.${c}`, `$JS.ACK.${s}.${c}.>`];
}

/** Pull, look up and acknowledge any consumer of the deploy jobs stream (the per-host ones). */
function hostConsumerRights(subjects: Subjects): string[] {
  const s = subjects.streams.deployJobs;
  return [`${API}.CONSUMER.INFO.${s}.*`, `${API}.CONSUMER.MSG.NEXT.${s}.*`, `$JS.ACK.${s}.*.>`];
}

/** Open (stream info), get (direct or not) and write (put, create, update, delete) one bucket's keys. */
function bucketRights(bucket: string): string[] {
  const s = `KV_${bucket}`;
  return [
    `${API}.STREAM.INFO.${s}`,
    `${API}.DIRECT.GET.${s}`,
    `${API}.DIRECT.GET.${s}.>`,
    `${API}.STREAM.MSG.GET.${s}`,
    `$KV.${bucket}.>`,
  ];
}

/** Read-only stream info: a service checks at start that provisioning made its streams. */
function streamInfo(subjects: Subjects): string[] {
  return Object.values(subjects.streams).map((s) => `${API}.STREAM.INFO.${s}`);
}

/**
 * The allow lists of one identity for one prefix. Service users get their subjects, their durable
 * consumers (info, next, ack), their buckets, stream info and their inbox; `requests` only publishes
 * requests; `provision` has the JetStream API and no stream subject.
 */
export function busPermissions(subjects: Subjects, identity: BusIdentity): BusPermissions {
  const p = subjects.prefix;
  const f = subjects.filters;
  const d = durableConsumers(subjects);
  const b = bucketNames(subjects);
  // Dead letters of what the identity consumes (`<prefix>.dlq.<original subject>`, as `subjects.dlq`).
  const dlq = (filter: string) => `${p}.dlq.${filter}`;
  const inbox = `${inboxPrefixFor(identity)}.>`;
  const cancels = `${p}.control.cancel.*`;
  const service = (publish: string[], subscribe: string[] = []): BusPermissions => ({
    publish: [`${API}.INFO`, ...streamInfo(subjects), ...publish],
    subscribe: [inbox, ...subscribe],
  });
  switch (identity) {
    case 'planner':
      return service([
        // Only the planner publishes jobs, and cancels them.
        f.buildJobs,
        f.deployJobs,
        f.hostDeployJobs,
        cancels,
        f.runEvents,
        dlq(f.requests),
        dlq(f.buildResults),
        dlq(f.deployResults),
        ...durableRights(subjects, 'requests', d['planner-requests'].durable),
        ...durableRights(subjects, 'results', d['planner-results'].durable),
        ...durableRights(subjects, 'dlq', d['planner-job-dead-letters'].durable),
        ...durableRights(subjects, 'events', d['planner-environments'].durable),
      ]);
    case 'build':
      return service(
        [
          f.buildResults,
          f.logs,
          dlq(f.buildJobs),
          ...durableRights(subjects, 'buildJobs', d['build-workers'].durable),
          ...bucketRights(b.buildJobResults),
          ...bucketRights(b.buildLocks),
        ],
        [cancels],
      );
    case 'deploy':
      return service(
        [
          f.deployResults,
          f.logs,
          dlq(f.deployJobs),
          dlq(f.hostDeployJobs),
          ...durableRights(subjects, 'deployJobs', d['deploy-workers'].durable),
          // Every deploy host's consumer (`deploy-host-<host>`): all deploy workers are one identity.
          ...hostConsumerRights(subjects),
          ...bucketRights(b.deployJobResults),
        ],
        [cancels],
      );
    case 'control': {
      const events = subjects.streams.events;
      const logs = subjects.streams.logs;
      return service([
        f.environmentEvents,
        dlq(f.runEvents),
        ...durableRights(subjects, 'events', d['control-runs'].durable),
        // WatchDeployment and StreamLogs read through ephemeral consumers of their own: the legacy
        // create subject makes ephemerals only (the server refuses a durable name there), and only
        // on these two streams — no stream right, no other stream's consumers.
        ...[events, logs].flatMap((s) => [
          `${API}.CONSUMER.CREATE.${s}`,
          `${API}.CONSUMER.INFO.${s}.*`,
          `${API}.CONSUMER.MSG.NEXT.${s}.*`,
          `${API}.CONSUMER.DELETE.${s}.*`,
        ]),
      ]);
    }
    case 'requests':
      // Tools: requests only (core NATS or JetStream publish; the ack comes to its inbox), and the
      // account's JetStream limits a JetStream client asks for when it starts.
      return { publish: [`${API}.INFO`, `${p}.requests.>`], subscribe: [inbox] };
    case 'provision':
      // Streams, consumers and buckets: the whole JetStream API, and no message subject at all.
      return { publish: [`${API}.>`], subscribe: [inbox] };
    default: {
      const unreachable: never = identity;
      throw new Error(`unknown bus identity ${String(unreachable)}`);
    }
  }
}
