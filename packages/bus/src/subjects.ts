// Every subject, stream name and durable consumer name Stageline uses on NATS is derived here,
// from one prefix, so that tests and several installations can share a server without taking each
// other's messages.
import { invalidArgument } from '@stageline/errors';

export const DEFAULT_BUS_PREFIX = 'stageline';
export const BUS_PREFIX_ENV = 'STAGELINE_BUS_PREFIX';

/** The seven streams, by the key services use to name them. */
export type StreamKey = 'requests' | 'buildJobs' | 'deployJobs' | 'results' | 'events' | 'logs' | 'dlq';
export const STREAM_KEYS: readonly StreamKey[] = [
  'requests',
  'buildJobs',
  'deployJobs',
  'results',
  'events',
  'logs',
  'dlq',
];

const STREAM_SUFFIX: Readonly<Record<StreamKey, string>> = {
  requests: 'REQUESTS',
  buildJobs: 'BUILD_JOBS',
  deployJobs: 'DEPLOY_JOBS',
  results: 'RESULTS',
  events: 'EVENTS',
  logs: 'LOGS',
  dlq: 'DLQ',
};

const PREFIX_PATTERN = /^[a-z0-9_-]+$/;
const DURABLE_PATTERN = /^[A-Za-z0-9_-]+$/;
// A token of a concrete subject: no separator, no wildcard, no whitespace or control characters.
const TOKEN_PATTERN = /^[^.*>\s\p{Cc}]+$/u;

/** Wildcard filters: one string each, because NATS 2.9 consumers take a single `filter_subject`. */
export interface SubjectFilters {
  readonly requests: string;
  readonly buildJobs: string;
  /** Deploy jobs any deploy worker may take (`<prefix>.jobs.deploy.<deployment>`). */
  readonly deployJobs: string;
  /** Deploy jobs bound to a deploy host (`<prefix>.jobs.deploy.<deployment>.<host>`): the `local` runtime's. */
  readonly hostDeployJobs: string;
  /** Build and deploy results together (`<prefix>.results.*.*`). */
  readonly results: string;
  readonly buildResults: string;
  readonly deployResults: string;
  /** Environment and run events together (`<prefix>.events.>`). */
  readonly events: string;
  readonly environmentEvents: string;
  readonly runEvents: string;
  readonly logs: string;
  readonly dlq: string;
}

export interface Subjects {
  readonly prefix: string;
  /** The uppercased prefix every stream and durable consumer name starts with, e.g. `STAGELINE`. */
  readonly streamPrefix: string;
  /** Stream name per stream key, e.g. `streams.buildJobs === 'STAGELINE_BUILD_JOBS'`. */
  readonly streams: Readonly<Record<StreamKey, string>>;
  /** The subjects each stream captures (its `subjects` config). */
  readonly streamSubjects: Readonly<Record<StreamKey, readonly string[]>>;
  readonly filters: SubjectFilters;

  requests(environmentId: string): string;
  buildJobs(deploymentId: string): string;
  deployJobs(deploymentId: string): string;
  /** A deploy job only the workers of `host` (their DEPLOY_HOST) take. */
  hostDeployJobs(deploymentId: string, host: string): string;
  /** The filter of one deploy host's jobs. */
  hostDeployJobsFilter(host: string): string;
  buildResults(deploymentId: string): string;
  deployResults(deploymentId: string): string;
  environmentEvents(environmentId: string): string;
  runEvents(environmentId: string, deploymentId: string): string;
  logs(deploymentId: string, serviceId: string): string;
  /** `<prefix>.dlq.<originalSubject>`: where a dead-lettered message from `originalSubject` goes. */
  dlq(originalSubject: string): string;

  /** Filter for the run events of one deployment (any environment), or of one environment. */
  runEventsFilter(scope: { environmentId?: string; deploymentId?: string }): string;
  /** Filter for the logs of one deployment, optionally of one service. */
  logsFilter(deploymentId: string, serviceId?: string): string;
  /** Server-side name of a durable consumer: `<STREAM_PREFIX>_<durable>`. */
  consumerName(durable: string): string;
}

export function validatePrefix(prefix: string, field = 'prefix'): string {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw invalidArgument(field, `must be a single NATS token of [a-z0-9_-], got ${JSON.stringify(prefix)}`);
  }
  return prefix;
}

/** One id going into a subject must stay one token, or it would change which subjects match. */
export function validateToken(value: string, field: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw invalidArgument(field, 'must not be empty');
  }
  if (!TOKEN_PATTERN.test(value)) {
    throw invalidArgument(
      field,
      `must not contain '.', '*', '>', whitespace or control characters, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** A concrete (publishable) subject: non-empty tokens, no wildcards. */
export function validateSubject(subject: string, field = 'subject'): string {
  if (typeof subject !== 'string' || subject.length === 0) {
    throw invalidArgument(field, 'must not be empty');
  }
  for (const token of subject.split('.')) {
    if (token.length === 0 || !TOKEN_PATTERN.test(token)) {
      throw invalidArgument(field, `is not a concrete NATS subject: ${JSON.stringify(subject)}`);
    }
  }
  return subject;
}

export function validateDurable(durable: string, field = 'durable'): string {
  if (!DURABLE_PATTERN.test(durable)) {
    throw invalidArgument(field, `must match [A-Za-z0-9_-]+, got ${JSON.stringify(durable)}`);
  }
  return durable;
}

/** The prefix from `STAGELINE_BUS_PREFIX`, default `stageline`; validated. */
export function busPrefixFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const raw = env[BUS_PREFIX_ENV];
  return validatePrefix(raw === undefined || raw === '' ? DEFAULT_BUS_PREFIX : raw, BUS_PREFIX_ENV);
}

/**
 * A deploy host's name (`DEPLOY_HOST`, an environment's `settings.deploy_host`): a DNS label, so that it
 * is one subject token and part of a consumer name.
 */
export function validateDeployHost(host: string, field = 'deploy_host'): string {
  if (typeof host !== 'string' || !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(host)) {
    throw invalidArgument(
      field,
      `must be a DNS label (lowercase letters, digits and "-", at most 63), got ${JSON.stringify(host)}`,
    );
  }
  return host;
}

export function createSubjects(prefix: string = DEFAULT_BUS_PREFIX): Subjects {
  const p = validatePrefix(prefix);
  const streamPrefix = p.toUpperCase();
  const streams = Object.fromEntries(STREAM_KEYS.map((k) => [k, `${streamPrefix}_${STREAM_SUFFIX[k]}`])) as Record<
    StreamKey,
    string
  >;
  const filters: SubjectFilters = {
    requests: `${p}.requests.*`,
    buildJobs: `${p}.jobs.build.*`,
    deployJobs: `${p}.jobs.deploy.*`,
    hostDeployJobs: `${p}.jobs.deploy.*.*`,
    results: `${p}.results.*.*`,
    buildResults: `${p}.results.build.*`,
    deployResults: `${p}.results.deploy.*`,
    events: `${p}.events.>`,
    environmentEvents: `${p}.events.environments.*`,
    runEvents: `${p}.events.runs.*.*`,
    logs: `${p}.logs.*.*`,
    dlq: `${p}.dlq.>`,
  };
  const streamSubjects: Record<StreamKey, readonly string[]> = {
    requests: [filters.requests],
    buildJobs: [filters.buildJobs],
    deployJobs: [filters.deployJobs, filters.hostDeployJobs],
    // Only the two result kinds: a stray `results.foo.x` is refused by the server instead of stored.
    results: [filters.buildResults, filters.deployResults],
    events: [filters.environmentEvents, filters.runEvents],
    logs: [filters.logs],
    dlq: [filters.dlq],
  };
  const env = (id: string) => validateToken(id, 'environment_id');
  const dep = (id: string) => validateToken(id, 'deployment_id');
  const svc = (id: string) => validateToken(id, 'service_id');

  return {
    prefix: p,
    streamPrefix,
    streams,
    streamSubjects,
    filters,
    requests: (environmentId) => `${p}.requests.${env(environmentId)}`,
    buildJobs: (deploymentId) => `${p}.jobs.build.${dep(deploymentId)}`,
    deployJobs: (deploymentId) => `${p}.jobs.deploy.${dep(deploymentId)}`,
    hostDeployJobs: (deploymentId, host) => `${p}.jobs.deploy.${dep(deploymentId)}.${validateDeployHost(host)}`,
    hostDeployJobsFilter: (host) => `${p}.jobs.deploy.*.${validateDeployHost(host)}`,
    buildResults: (deploymentId) => `${p}.results.build.${dep(deploymentId)}`,
    deployResults: (deploymentId) => `${p}.results.deploy.${dep(deploymentId)}`,
    environmentEvents: (environmentId) => `${p}.events.environments.${env(environmentId)}`,
    runEvents: (environmentId, deploymentId) => `${p}.events.runs.${env(environmentId)}.${dep(deploymentId)}`,
    logs: (deploymentId, serviceId) => `${p}.logs.${dep(deploymentId)}.${svc(serviceId)}`,
    dlq: (originalSubject) => `${p}.dlq.${validateSubject(originalSubject)}`,
    runEventsFilter: ({ environmentId, deploymentId }) =>
      `${p}.events.runs.${environmentId === undefined ? '*' : env(environmentId)}.${
        deploymentId === undefined ? '*' : dep(deploymentId)
      }`,
    logsFilter: (deploymentId, serviceId) =>
      `${p}.logs.${dep(deploymentId)}.${serviceId === undefined ? '*' : svc(serviceId)}`,
    consumerName: (durable) => `${streamPrefix}_${validateDurable(durable)}`,
  };
}
