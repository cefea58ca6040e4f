// Why a build was (not) rebuilt: its cache key's inputs, each marked changed or not against the
// service's previous build. Served by BuildService/ExplainBuild; the build job prints the same lines.
import { notFound } from '@stageline/errors';
import type { BuildRecord, BuildStore } from '../adapters/db/build-store.ts';
import { explainInputs, type InputChange, type KeyInput } from '../domain/cache-key.ts';

export interface Explanation {
  build: BuildRecord;
  cacheKey: string;
  image: string;
  inputs: InputChange[];
  /** Empty when the service was never built before. */
  previousCacheKey: string;
}

/** Compares `inputs` with the service's previous build (another run's, successful, started before). */
export async function compareWithPrevious(
  store: BuildStore,
  build: Pick<BuildRecord, 'id' | 'serviceId' | 'deploymentId' | 'startedAt'>,
  inputs: readonly KeyInput[],
): Promise<{ inputs: InputChange[]; previousCacheKey: string }> {
  const previous = await store.previousFor(build.serviceId, build);
  const previousKey = previous?.cacheKey ? await store.key(previous.cacheKey) : undefined;
  return { inputs: explainInputs(inputs, previousKey?.inputs), previousCacheKey: previousKey?.key ?? '' };
}

export async function explainBuild(store: BuildStore, serviceId: string, deploymentId?: string): Promise<Explanation> {
  const build = await store.latestFor(serviceId, deploymentId);
  if (build?.cacheKey == null) {
    throw deploymentId === undefined
      ? notFound('build of service', serviceId, 'service_id')
      : notFound('build of service in deployment', `${serviceId} / ${deploymentId}`, 'deployment_id');
  }
  const key = await store.key(build.cacheKey);
  const compared = await compareWithPrevious(store, build, key?.inputs ?? []);
  return { build, cacheKey: build.cacheKey, image: build.image, ...compared };
}

/** The explanation as log lines: the key, each input (changed ones marked), and the verdict. */
export function explanationLines(key: string, inputs: readonly InputChange[], previousCacheKey: string): string[] {
  const lines = [`cache key ${key} from:`];
  for (const i of inputs) lines.push(`  ${i.changed ? '*' : '-'} ${i.detail}`);
  if (previousCacheKey === '') {
    lines.push('first build of this service: no previous build to compare with');
  } else if (previousCacheKey === key) {
    lines.push("same inputs as the service's previous build");
  } else {
    const changed = inputs.filter((i) => i.changed).map((i) => i.detail);
    lines.push(
      `changed since the service's previous build (key ${previousCacheKey.slice(0, 12)}): ${changed.join('; ')}`,
    );
  }
  return lines;
}
