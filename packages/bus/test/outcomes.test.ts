import { nanos } from '@nats-io/transport-node';
import {
  alreadyExists,
  DomainError,
  type ErrorCode,
  failedPrecondition,
  invalidArgument,
  notFound,
} from '@stageline/errors';
import { describe, expect, it } from 'vitest';
import {
  consumerConfig,
  createSubjects,
  nakDelayForServer,
  outcomeForError,
  redeliveryBackoffMs,
  retryDelayMs,
  streamConfigs,
} from '../src/index.ts';

describe('outcomeForError', () => {
  it.each([
    ['INVALID_ARGUMENT', invalidArgument('service_ids', 'unknown service')],
    ['NOT_FOUND', notFound('environment', 'e1')],
    ['ALREADY_EXISTS', alreadyExists('name', 'taken')],
    ['FAILED_PRECONDITION', failedPrecondition('environment is deleted')],
    ['INTERNAL', new DomainError('INTERNAL', 'bug')],
    ['UNAVAILABLE', new DomainError('UNAVAILABLE', 'permanently gone', { retryable: false })],
  ] as const)('dead-letters a non-retryable %s with its message as reason', (code, error) => {
    const o = outcomeForError(error, 1);
    expect(o).toEqual({ reject: { reason: `${code}: ${error.message}` } });
  });

  it.each<ErrorCode>([
    'INVALID_ARGUMENT',
    'NOT_FOUND',
    'ALREADY_EXISTS',
    'FAILED_PRECONDITION',
    'UNAVAILABLE',
    'INTERNAL',
  ])('retries a retryable %s with exponential, capped delay', (code) => {
    const e = new DomainError(code, 'later', { retryable: true });
    const delay = { baseMs: 100, maxMs: 1_000 };
    expect(outcomeForError(e, 1, delay)).toEqual({ retry: { delayMs: 100 } });
    expect(outcomeForError(e, 2, delay)).toEqual({ retry: { delayMs: 200 } });
    expect(outcomeForError(e, 4, delay)).toEqual({ retry: { delayMs: 800 } });
    expect(outcomeForError(e, 5, delay)).toEqual({ retry: { delayMs: 1_000 } });
  });

  it('retries UNAVAILABLE by default (DomainError marks it retryable)', () => {
    expect(outcomeForError(new DomainError('UNAVAILABLE', 'db down'), 1)).toEqual({ retry: { delayMs: 1_000 } });
  });

  it('retries anything that is not a DomainError', () => {
    expect(outcomeForError(new Error('boom'), 3)).toEqual({ retry: { delayMs: 4_000 } });
    expect(outcomeForError('a string', 1)).toEqual({ retry: { delayMs: 1_000 } });
  });

  it('caps the delay for huge delivery counts', () => {
    expect(retryDelayMs(10_000)).toBe(60_000);
    expect(retryDelayMs(0)).toBe(1_000);
  });
});

describe('consumer and stream configs', () => {
  const subjects = createSubjects('cfg');

  it('suggests a redelivery backoff starting at ack_wait and shorter than max_deliver', () => {
    expect(redeliveryBackoffMs(30_000, 5)).toEqual([30_000, 60_000, 120_000, 240_000]);
    expect(redeliveryBackoffMs(30_000, 3)).toEqual([30_000, 60_000]);
    expect(redeliveryBackoffMs(30_000, 1)).toEqual([]);
    expect(redeliveryBackoffMs(600_000, -1)).toEqual([600_000, 900_000, 900_000, 900_000]);
  });

  it('builds an explicit-ack durable with the fleet-wide max_ack_pending', () => {
    const c = consumerConfig(subjects, {
      durable: 'build-workers',
      filterSubject: subjects.filters.buildJobs,
      ackWaitMs: 30_000,
      maxDeliver: 5,
      maxAckPending: 7 * 16,
    });
    expect(c).toMatchObject({
      durable_name: 'CFG_build-workers',
      ack_policy: 'explicit',
      ack_wait: nanos(30_000),
      max_deliver: 5,
      max_ack_pending: 112,
      filter_subject: 'cfg.jobs.build.*',
    });
    // No server backoff by default: it would shift every delayed nak (see README).
    expect(c.backoff).toBeUndefined();
  });

  it('corrects nak delays for a server-side backoff', () => {
    expect(nakDelayForServer(100, 1, [])).toBe(100);
    expect(nakDelayForServer(100, 3, [])).toBe(100);
    expect(nakDelayForServer(100, 1, [2_000, 6_000])).toBe(100);
    expect(nakDelayForServer(100, 2, [2_000, 6_000])).toBe(100 - 4_000);
    expect(nakDelayForServer(100, 7, [2_000, 6_000])).toBe(100 - 4_000);
  });

  it('refuses a backoff the server would refuse', () => {
    expect(() =>
      consumerConfig(subjects, { durable: 'x', ackWaitMs: 1_000, maxDeliver: 2, maxAckPending: 1, backoffMs: [1, 2] }),
    ).toThrow(DomainError);
  });

  it('declares work queues for jobs and limits with ages for the rest, all with a duplicate window', () => {
    const c = streamConfigs(subjects);
    expect(c.buildJobs.retention).toBe('workqueue');
    expect(c.deployJobs.retention).toBe('workqueue');
    for (const k of ['requests', 'results', 'events', 'logs', 'dlq'] as const) expect(c[k].retention).toBe('limits');
    for (const cfg of Object.values(c)) expect(cfg.duplicate_window).toBe(nanos(120_000));
    expect(c.events.max_age).toBe(nanos(7 * 24 * 3_600_000));
    expect(c.logs.max_bytes).toBeGreaterThan(0);
    expect(c.logs.max_age).toBeGreaterThan(0);
  });
});
