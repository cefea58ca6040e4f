import { invalidArgument } from '@stageline/errors';

// Sizes of what a client may define, chosen so that every message the definitions end up in stays
// well under NATS's max_payload (1 MiB): a service's definition rides in its EnvironmentEvent, its
// BuildJob and DeployJob; a whole environment in the EnvironmentCreated of a clone and in the planner's
// snapshot. A message over max_payload is never published: the outbox relay sets such a row aside (its
// event is lost to consumers) so the rows after it flow on. So the input never gets there.
// The largest messages these limits allow are measured by test/e2e/limits.test.ts (README: Limits).

const KiB = 1024;

export const LIMITS = {
  /** Env vars of one service. */
  envVarsPerService: 100,
  /** One env var's key (bytes, ASCII). */
  envKeyBytes: 256,
  /** One env var's value (UTF-8 bytes). */
  envValueBytes: 32 * KiB,
  /** All env vars of one service together: keys and values (UTF-8 bytes). */
  envVarsBytesPerService: 128 * KiB,
  /** Ports of one CONTAINER or APPLICATION service. */
  portsPerService: 32,
  /** The arguments of an exec health check. */
  execArgs: 64,
  /** A custom chart's values_yaml (UTF-8 bytes). */
  chartValuesBytes: 128 * KiB,
  /** One service's definition as encoded protobuf (secrets included): what its jobs and events carry. */
  serviceBytes: 256 * KiB,
  /** Services of one environment. */
  servicesPerEnvironment: 64,
  /** Stages of one environment. */
  stagesPerEnvironment: 32,
  /** A whole environment (settings, pipeline, every service with its secrets) as encoded protobuf. */
  environmentBytes: 512 * KiB,
} as const;

export function kib(bytes: number): string {
  return bytes % KiB === 0 ? `${bytes / KiB} KiB` : `${bytes} bytes`;
}

/** Throws INVALID_ARGUMENT naming `field` and the limit when `value` is over `limit`. */
export function checkAtMost(field: string, what: string, value: number, limit: number, unit: 'bytes' | '' = ''): void {
  if (value <= limit) return;
  const shown = unit === 'bytes' ? `${value} bytes; the limit is ${kib(limit)}` : `${value}; the limit is ${limit}`;
  throw invalidArgument(field, `${what} is ${shown}`);
}

export interface EnvironmentCounts {
  services: number;
  stages: number;
}

/** An environment's counts against their limits; `field`: the request field that would exceed them. */
export function checkEnvironmentCounts(counts: EnvironmentCounts, field: string): void {
  checkAtMost(field, 'the number of services in the environment', counts.services, LIMITS.servicesPerEnvironment);
  checkAtMost(field, 'the number of stages in the environment', counts.stages, LIMITS.stagesPerEnvironment);
}
