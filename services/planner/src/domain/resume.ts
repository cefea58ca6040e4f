// Resuming a FAILED or CANCELED run, pure: whether it may be resumed, whether the environment changed
// in a way that makes reusing what succeeded unsafe (and what), and which services the new run runs.
import type { RunState, ServiceRun, ServiceStateName } from './model.ts';

/** A service's work in a run that ended in one of these states succeeded. */
const SUCCEEDED: ReadonlySet<ServiceStateName> = new Set(['DEPLOYED', 'STOPPED', 'RESTARTED', 'DELETED']);

/** Why a run cannot be resumed, or undefined when it can (it FAILED or was CANCELED). */
export function notResumable(status: string): string | undefined {
  if (status === 'FAILED' || status === 'CANCELED') return undefined;
  return `only a FAILED or CANCELED run can be resumed; this one is ${status}`;
}

/**
 * The run in which a service of `previous` last succeeded, or undefined when its work there did not
 * succeed (failed, canceled, never started, skipped for its own reasons). A service a resume reused
 * keeps the run it succeeded in.
 */
export function succeededIn(s: ServiceRun, previousId: string): string | undefined {
  if (s.status === 'SKIPPED') return s.succeededIn;
  return SUCCEEDED.has(s.status) && !s.failed ? previousId : undefined;
}

/**
 * The resume of `previous` (id `previousId`), from the run planned afresh for the same request:
 * every service that succeeded in it is SKIPPED "succeeded in run X"; the rest keep their planned
 * work and run in stage order. A stage whose services are all skipped is skipped.
 */
export function resumeRun(planned: RunState, previous: Pick<RunState, 'services'>, previousId: string): RunState {
  const before = new Map(previous.services.map((s) => [s.serviceId, s]));
  const services = planned.services.map((s): ServiceRun => {
    const then = before.get(s.serviceId);
    const run = then === undefined ? undefined : succeededIn(then, previousId);
    if (run === undefined || then === undefined) return s;
    return {
      ...s,
      status: 'SKIPPED',
      build: null,
      deploy: null,
      version: then.version,
      image: then.image,
      finished: true,
      failed: false,
      message: `succeeded in run ${run}`,
      succeededIn: run,
      endpoints: then.endpoints,
    };
  });
  const stages = planned.stages.map((st) => {
    const members = services.filter((s) => s.stageId === st.stageId);
    return { ...st, status: members.every((s) => s.status === 'SKIPPED') ? ('SKIPPED' as const) : st.status };
  });
  return { ...planned, services, stages };
}

/** A service's definition as a run's snapshot keeps it (the JSON of control.Service). */
export interface ServiceDefinition {
  id: string;
  name?: string;
  stageId?: string;
  envVars?: { key?: string; value?: string; secret?: boolean }[];
  [field: string]: unknown;
}

/** What a resume compares between the run's snapshot and the environment now. */
export interface EnvironmentShape {
  runtime: string;
  namespace: string;
  /** Stage ids in pipeline order. */
  stages: readonly string[];
  services: readonly ServiceDefinition[];
}

/** Fields that say nothing about what is deployed (endpoints are output: where it answered). */
const NOT_DEPLOYED = new Set(['createdAt', 'updatedAt', 'skipped', 'stageId', 'name', 'environmentId', 'endpoints']);

/** JSON with object keys sorted at every depth: a snapshot read back from jsonb has its keys reordered. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/**
 * A definition as deployed, for comparison: secret values are sealed (a rotation seals them again),
 * so a secret compares by its name only.
 */
export function deployedShape(d: ServiceDefinition): string {
  const fields = Object.fromEntries(
    Object.entries(d)
      .filter(([k]) => !NOT_DEPLOYED.has(k))
      .map(([k, v]) => [
        k,
        k === 'envVars' ? (d.envVars ?? []).map((e) => (e.secret ? { key: e.key, secret: true } : e)) : v,
      ]),
  );
  return canonicalJson(fields);
}

/**
 * Why resuming `previous` against the environment as it is `now` would be unsafe, each change named;
 * empty when it is safe. Reusing a service that succeeded is unsafe when it is configured differently
 * since, moved to another stage, or gone; so is the environment's runtime or namespace changing, or its
 * stages being reordered. Services that did not succeed may have changed freely: that is the fix.
 */
export function resumeRefusals(
  previous: Pick<RunState, 'services' | 'stages'>,
  previousId: string,
  then: EnvironmentShape,
  now: EnvironmentShape,
): string[] {
  const reasons: string[] = [];
  if (then.runtime !== now.runtime)
    reasons.push(`the runtime changed (${then.runtime || 'local'} → ${now.runtime || 'local'})`);
  if (then.namespace !== now.namespace) reasons.push(`the namespace changed (${then.namespace} → ${now.namespace})`);
  const order = (stages: readonly string[]) => {
    const inRun = new Set(previous.stages.map((s) => s.stageId));
    return stages.filter((id) => inRun.has(id)).join(',');
  };
  if (order(then.stages) !== order(now.stages)) reasons.push("the run's stages are in a different order");
  const thenById = new Map(then.services.map((s) => [s.id, s]));
  const nowById = new Map(now.services.map((s) => [s.id, s]));
  for (const s of previous.services) {
    const current = nowById.get(s.serviceId);
    if (current === undefined) {
      reasons.push(`service "${s.name}" was removed`);
      continue;
    }
    if (succeededIn(s, previousId) === undefined) continue;
    if (current.stageId !== undefined && current.stageId !== s.stageId) {
      reasons.push(`service "${s.name}", which succeeded, moved to another stage`);
    }
    const old = thenById.get(s.serviceId);
    if (old !== undefined && deployedShape(old) !== deployedShape(current)) {
      reasons.push(`service "${s.name}", which succeeded, is configured differently since`);
    }
  }
  return reasons;
}
