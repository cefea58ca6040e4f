import { snapshot } from '@stageline/proto';
import { plaintextBytes } from '@stageline/secrets';
import { checkAtMost, checkEnvironmentCounts, LIMITS } from '../domain/limits.ts';
import type { EnvironmentAggregate, ServiceRecord } from './model.ts';
import { environmentView, pipelineView, servicesInOrder, serviceView } from './views.ts';

// The encoded sizes the limits are about, measured on the messages themselves: a service as its jobs
// and events carry it, an environment as the planner's snapshot carries it (the largest of its
// messages: every service, secrets included, plus settings and pipeline).

function withSecrets(aggregate: EnvironmentAggregate, service: ServiceRecord) {
  const view = serviceView(aggregate, service);
  return {
    ...view,
    envVars: service.definition.envVars.map((v) => (v.secret ? { ...v, value: service.secrets[v.key] ?? '' } : v)),
  };
}

/**
 * The service as the limits measure it: a secret counts as many bytes as the user gave (its sealed
 * form is about a third longer), so what a user may define does not depend on encryption. The sealed
 * messages stay well under max_payload all the same (README: Limits).
 */
function measured(aggregate: EnvironmentAggregate, service: ServiceRecord) {
  const full = withSecrets(aggregate, service);
  return {
    ...full,
    envVars: full.envVars.map((v) => (v.secret ? { ...v, value: 'x'.repeat(plaintextBytes(v.value)) } : v)),
  };
}

/** The planner's snapshot of the aggregate: what a run reads, and the upper bound of a clone's event. */
export function snapshotOf(aggregate: EnvironmentAggregate): snapshot.GetEnvironmentSnapshotResponse {
  const services = servicesInOrder(aggregate);
  return {
    environment: environmentView(aggregate.environment),
    pipeline: pipelineView(aggregate),
    services: services.map((s) => withSecrets(aggregate, s)),
    deployedServiceIds: services.filter((s) => s.hasResources).map((s) => s.id),
  };
}

/**
 * Checks the aggregate a change leads to against the limits: the changed service's size (when
 * `serviceId` is given), the numbers of services and stages, and the whole environment's size. `field`:
 * the request field the refusal names.
 */
export function checkLimits(next: EnvironmentAggregate, field: string, serviceId?: string): void {
  checkEnvironmentCounts({ services: next.services.length, stages: next.pipeline.stages.length }, field);
  const service = serviceId === undefined ? undefined : next.services.find((s) => s.id === serviceId);
  if (service !== undefined) {
    const full = measured(next, service);
    const envBytes = full.envVars.reduce((sum, v) => sum + v.key.length + Buffer.byteLength(v.value), 0);
    checkAtMost(
      `${field}.env_vars`,
      'the size of all env vars (keys and values, secrets included)',
      envBytes,
      LIMITS.envVarsBytesPerService,
      'bytes',
    );
    const bytes = snapshot.GetEnvironmentSnapshotResponse.encode({
      environment: undefined,
      pipeline: undefined,
      services: [full],
      deployedServiceIds: [],
    }).finish().length;
    checkAtMost(field, 'the encoded size of the service', bytes, LIMITS.serviceBytes, 'bytes');
  }
  const bytes = snapshot.GetEnvironmentSnapshotResponse.encode({
    ...snapshotOf(next),
    services: servicesInOrder(next).map((s) => measured(next, s)),
  }).finish().length;
  checkAtMost(field, 'the encoded size of the whole environment', bytes, LIMITS.environmentBytes, 'bytes');
}
