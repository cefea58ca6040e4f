// Rolling back to the environment as a past run left it, pure: each service it deployed gets back
// its definition as that run deployed it (env vars — secret ones as sealed then —, ports, resources,
// probes, strategy), and a plan says per service what that changes.
import type { ServiceRun } from './model.ts';
import { deployedShape, type ServiceDefinition } from './resume.ts';

/** Where a service sits in the environment now: a rollback restores what it deploys, not where it sits. */
const PLACE = ['id', 'name', 'stageId', 'skipped', 'environmentId', 'createdAt', 'updatedAt'] as const;

/**
 * The definitions a rollback deploys: for each service in `restored` that the target run's snapshot
 * has, its definition then (keeping its place now: name, stage, skipped); a secret whose value was
 * purged since (empty) keeps its value now when it still exists. Other services: as they are now.
 */
export function rollbackDefinitions<D extends ServiceDefinition>(
  now: readonly D[],
  then: readonly ServiceDefinition[],
  restored: ReadonlySet<string>,
): D[] {
  const thenById = new Map(then.map((s) => [s.id, s]));
  return now.map((current) => {
    const old = thenById.get(current.id);
    if (old === undefined || !restored.has(current.id)) return current;
    const place = Object.fromEntries(PLACE.filter((k) => k in current).map((k) => [k, current[k]]));
    const envVars = (old.envVars ?? []).map((v) => {
      if (!v.secret || v.value) return v;
      const kept = (current.envVars ?? []).find((c) => c.key === v.key && c.secret)?.value;
      return kept ? { ...v, value: kept } : v;
    });
    return { ...old, ...place, envVars } as D;
  });
}

const FIELD_NAMES: Record<string, string> = {
  buildResources: 'build resources',
  readinessTimeoutSeconds: 'readiness timeout',
  healthCheck: 'probes',
  strategy: 'strategy',
  chart: 'chart',
  container: 'container source (image, ports)',
  application: 'application source',
  database: 'database',
  job: 'job',
};

/**
 * What deploying `then` instead of `now` changes, in words: env vars by name only (never a value:
 * some are secrets), then every other deployed field by name (ports live in the source); empty when nothing does.
 */
export function definitionChanges(now: ServiceDefinition, then: ServiceDefinition): string[] {
  const changes: string[] = [];
  const vars = (d: ServiceDefinition) => new Map((d.envVars ?? []).map((v) => [v.key ?? '', v]));
  const a = vars(now);
  const b = vars(then);
  const added = [...b.keys()].filter((k) => !a.has(k));
  const removed = [...a.keys()].filter((k) => !b.has(k));
  const changed = [...b.keys()].filter(
    (k) => a.has(k) && (a.get(k)?.value !== b.get(k)?.value || a.get(k)?.secret !== b.get(k)?.secret),
  );
  if (changed.length > 0) changes.push(`env ${changed.sort().join(', ')} back to their earlier value`);
  if (added.length > 0) changes.push(`env ${added.sort().join(', ')} restored`);
  if (removed.length > 0) changes.push(`env ${removed.sort().join(', ')} removed`);
  const keys = new Set([...Object.keys(now), ...Object.keys(then)]);
  for (const k of [...keys].sort()) {
    if (k === 'envVars') continue;
    const one = deployedShape({ id: '', [k]: now[k] });
    const other = deployedShape({ id: '', [k]: then[k] });
    if (one !== other) changes.push(`${FIELD_NAMES[k] ?? k} as then`);
  }
  return changes;
}

/** One line per restored service for a rollback's plan: its version and what its definition changes. */
export function rollbackSummary(
  current: { version: string },
  target: { version: string },
  now: ServiceDefinition | undefined,
  then: ServiceDefinition | undefined,
): string {
  const parts: string[] = [];
  if (current.version !== target.version) {
    parts.push(`version ${current.version || '(none)'} → ${target.version || '(none)'}`);
  }
  if (now !== undefined && then !== undefined) parts.push(...definitionChanges(now, then));
  return parts.length === 0 ? 'rollback: nothing changes' : `rollback: ${parts.join('; ')}`;
}

/**
 * What a rollback restores of each service, from the target run's final state: a service it DEPLOYED
 * with an image — or without one for a managed database (nothing to pull) or a past revision the
 * deploy service keeps. Other services are not restored (they keep what they have now).
 */
export function rollbackTargets(
  target: readonly Pick<ServiceRun, 'serviceId' | 'status' | 'image' | 'kind' | 'build' | 'version'>[],
): Record<string, { version: string; image: string }> {
  return Object.fromEntries(
    target
      .filter(
        (s) =>
          s.status === 'DEPLOYED' &&
          (s.image !== '' || (s.kind === 'DATABASE' && s.build === null) || s.version.startsWith('revision:')),
      )
      .map((s) => [s.serviceId, { version: s.version, image: s.image }]),
  );
}
