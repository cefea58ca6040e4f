// A service's own Helm chart (Service.chart), used instead of the generated one: what the release
// directory records about it, and the values Stageline adds. Only the kubernetes runtime can render it.
import { createHash } from 'node:crypto';
import { invalidArgument } from '@stageline/errors';
import type { bus } from '@stageline/proto';
import { parse, stringify } from 'yaml';
import type { Chart, ChartFile } from './chart.ts';
import { MIRROR_PULL_SECRET, pullImage } from './kube-target.ts';
import type { KubernetesTarget } from './workload.ts';

/** The file in a release directory that marks (and describes) a custom chart. */
export const CUSTOM_CHART_FILE = 'custom.json';
export const VALUES_OVERRIDES_FILE = 'values-overrides.yaml';
export const VALUES_STAGELINE_FILE = 'values-stageline.yaml';

export type CustomChartRef =
  | { type: 'path'; gitUrl: string; commit: string; path: string }
  | { type: 'repository'; url: string; name: string; version: string };

/** `repo:tag@digest` → repository and tag (`tag@digest` when pinned, so `{{repository}}:{{tag}}` stays exact). */
export function splitImage(image: string): { repository: string; tag: string } {
  const at = image.indexOf('@');
  const name = at === -1 ? image : image.slice(0, at);
  const digest = at === -1 ? '' : image.slice(at);
  const colon = name.lastIndexOf(':');
  const hasTag = colon > name.lastIndexOf('/');
  const repository = hasTag ? name.slice(0, colon) : name;
  const tag = hasTag ? name.slice(colon + 1) : digest === '' ? 'latest' : '';
  return { repository, tag: digest === '' ? tag : tag === '' ? digest.slice(1) : `${tag}${digest}` };
}

function commitOf(version: string): string {
  const v = version.startsWith('commit:') ? version.slice(7) : version;
  if (!/^[0-9a-f]{7,64}$/.test(v)) {
    throw invalidArgument(
      'version',
      `a chart from the git repository needs the commit being deployed, got "${version}"`,
    );
  }
  return v;
}

/**
 * The release directory of a custom chart: its reference, the user's values, Stageline's values (the
 * image as the cluster pulls it, and the mirror's pull secret as `imagePullSecrets`, the usual name).
 */
export function renderCustomChart(job: bus.DeployJob, revision: number, kubernetes?: KubernetesTarget): Chart {
  const service = job.service;
  const chart = service?.chart;
  if (service === undefined || chart?.source === undefined) throw invalidArgument('service.chart', 'is not set');
  let ref: CustomChartRef;
  if (chart.source.$case === 'path') {
    if (service.source?.$case !== 'application') {
      throw invalidArgument('service.chart.path', 'a chart path needs the service git repository (APPLICATION)');
    }
    ref = {
      type: 'path',
      gitUrl: service.source.value.gitUrl,
      commit: commitOf(job.version),
      path: chart.source.value.replace(/^\/+|\/+$/g, ''),
    };
  } else {
    const r = chart.source.value;
    ref = { type: 'repository', url: r.url, name: r.name, version: r.version };
  }
  let overrides: unknown;
  try {
    overrides = chart.valuesYaml.trim() === '' ? {} : parse(chart.valuesYaml);
  } catch (e) {
    throw invalidArgument('service.chart.values_yaml', `not YAML: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (overrides === null || typeof overrides !== 'object' || Array.isArray(overrides)) {
    throw invalidArgument('service.chart.values_yaml', 'must be a YAML mapping');
  }
  const env: Record<string, string> = {};
  for (const v of service.envVars) env[v.key] = v.value;
  for (const [k, v] of Object.entries(job.injectedEnv)) if (!(k in env)) env[k] = v;
  // Applied after the user's values (helm -f order): the image always comes from the mirror.
  const image = kubernetes !== undefined ? pullImage(job.image.trim(), kubernetes.mirror) : job.image.trim();
  const stageline = {
    image: splitImage(image),
    ...(kubernetes?.pullSecret === true ? { imagePullSecrets: [{ name: MIRROR_PULL_SECRET }] } : {}),
    stageline: {
      environmentId: job.environmentId,
      serviceId: service.id,
      serviceName: service.name,
      revision,
      version: job.version,
      env,
    },
  };
  const files: ChartFile[] = [
    { path: CUSTOM_CHART_FILE, content: `${JSON.stringify(ref, null, 2)}\n` },
    { path: VALUES_OVERRIDES_FILE, content: stringify(overrides, { lineWidth: 0 }) },
    // Its env holds values injected from earlier stages (a database's password among them).
    { path: VALUES_STAGELINE_FILE, content: stringify(stageline, { lineWidth: 0 }), sensitive: true },
  ];
  // What would be installed: the reference and both values files, without the revision number.
  const hash = createHash('sha256')
    .update(JSON.stringify(ref))
    .update('\0')
    .update(chart.valuesYaml)
    .update('\0')
    .update(JSON.stringify({ ...stageline, stageline: { ...stageline.stageline, revision: 0 } }))
    .digest('hex');
  return { name: service.name, revision, files, configHash: hash };
}
