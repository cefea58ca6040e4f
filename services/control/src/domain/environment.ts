import { failedPrecondition, invalidArgument } from '@stageline/errors';
import {
  CLUSTER_IP,
  checkExposure,
  checkKubeContext,
  checkNamespace,
  defaultNamespace,
  type Exposure,
  type ExposureType,
} from '@stageline/policy';
import { control } from '@stageline/proto';
import { type AutoDeploySettings, applyAutoDeploySettings } from './auto-deploy.ts';
import { Mirror, Scheduling } from './kinds.ts';
import { checkDnsLabel } from './names.ts';

// Environment identity and settings, validated and completed with defaults.

export const RUNTIMES = ['local', 'kubernetes'] as const;
export type Runtime = (typeof RUNTIMES)[number];

export interface Settings {
  maxParallelBuilds: number;
  maxParallelDeploys: number;
  schedulingMode: control.SchedulingMode;
  mirrorMode: control.MirrorMode;
  kubernetesContext: string;
  /** Empty: the default `<project>-<name>`, resolved on read so that a clone gets its own. */
  namespace: string;
  /** `kubernetes`: how public ports are reached from outside the cluster (absent in rows stored before it). */
  exposure?: Exposure;
  /** Polling and the preview-source mark (absent in rows stored before it: neither). */
  autoDeploy?: AutoDeploySettings;
  /** `local`: the deploy host whose workers alone take the environment's jobs; ''/absent: any. */
  deployHost?: string;
}

/**
 * The deploy host of a new `local` environment: the given one, else the configured host with the fewest
 * `local` environments (ties: the first listed), else none (''). Kubernetes environments have none.
 */
export function chooseDeployHost(
  runtime: Runtime,
  requested: string,
  hosts: readonly string[],
  load: ReadonlyMap<string, number>,
): string {
  if (runtime !== 'local') return '';
  if (requested !== '') return requested;
  let best = '';
  let bestLoad = Number.POSITIVE_INFINITY;
  for (const host of hosts) {
    const n = load.get(host) ?? 0;
    if (n < bestLoad) {
      best = host;
      bestLoad = n;
    }
  }
  return best;
}

const EXPOSURE_TYPES: Record<number, ExposureType> = {
  [control.ExposureType.EXPOSURE_TYPE_CLUSTER_IP]: 'CLUSTER_IP',
  [control.ExposureType.EXPOSURE_TYPE_NODE_PORT]: 'NODE_PORT',
  [control.ExposureType.EXPOSURE_TYPE_LOAD_BALANCER]: 'LOAD_BALANCER',
  [control.ExposureType.EXPOSURE_TYPE_INGRESS]: 'INGRESS',
};

/** The exposure as the API shows it. */
export function exposureView(e: Exposure | undefined): control.Exposure {
  const x = e ?? CLUSTER_IP;
  const type = Number(Object.entries(EXPOSURE_TYPES).find(([, t]) => t === x.type)?.[0] ?? 0) as control.ExposureType;
  return { type, ingressDomain: x.ingressDomain, ingressClass: x.ingressClass, tlsSecret: x.tlsSecret };
}

/** A request's exposure over the current one: a given message replaces it, its UNSPECIFIED type keeps the type. */
function applyExposure(input: control.Exposure | undefined, current: Exposure): Exposure {
  if (input === undefined) return current;
  const type = input.type === 0 ? current.type : EXPOSURE_TYPES[input.type];
  if (type === undefined) {
    throw invalidArgument('settings.exposure.type', 'must be CLUSTER_IP, NODE_PORT, LOAD_BALANCER or INGRESS');
  }
  const exposure: Exposure = {
    type,
    ingressDomain: input.ingressDomain,
    ingressClass: input.ingressClass,
    tlsSecret: input.tlsSecret,
  };
  const bad = checkExposure(exposure);
  if (bad !== undefined) throw invalidArgument(`settings.exposure.${bad.field}`, bad.message);
  return exposure;
}

export const DEFAULT_PARALLELISM = 7;

export function checkProject(project: string): void {
  const error = checkDnsLabel(project);
  if (error) throw invalidArgument('project', error);
}

export function checkEnvironmentName(name: string, field = 'name'): void {
  const error = checkDnsLabel(name);
  if (error) throw invalidArgument(field, error);
}

export function checkRuntime(runtime: string): Runtime {
  if (runtime === '') return 'local';
  if (!(RUNTIMES as readonly string[]).includes(runtime))
    throw invalidArgument('runtime', 'must be "local" or "kubernetes"');
  return runtime as Runtime;
}

function parallelism(field: string, value: number | undefined, current: number): number {
  if (value === undefined) return current;
  if (!Number.isInteger(value) || value < 1 || value > 7) throw invalidArgument(field, 'must be between 1 and 7');
  return value;
}

const DEFAULT_SETTINGS: Settings = {
  maxParallelBuilds: DEFAULT_PARALLELISM,
  maxParallelDeploys: DEFAULT_PARALLELISM,
  schedulingMode: Scheduling.PIPELINED,
  mirrorMode: Mirror.SERVICE,
  kubernetesContext: '',
  namespace: '',
  exposure: CLUSTER_IP,
};

/**
 * Applies the fields present in `input` over `current` (defaults on create). Absent optional fields
 * and UNSPECIFIED enums keep the current value. `kubeContexts`: the contexts the operator registered
 * (a context not among them is FAILED_PRECONDITION); `deployHosts` likewise for `deploy_host`.
 */
export function applySettings(
  input: control.EnvironmentSettings | undefined,
  current: Settings = DEFAULT_SETTINGS,
  kubeContexts: readonly string[] = [],
  deployHosts: readonly string[] = [],
): Settings {
  if (input === undefined) return current;
  const field = (name: string) => `settings.${name}`;
  const schedulingMode = input.schedulingMode === 0 ? current.schedulingMode : input.schedulingMode;
  if (!Object.values(Scheduling).includes(schedulingMode as never)) {
    throw invalidArgument(field('scheduling_mode'), 'must be PIPELINED or STRICT');
  }
  const mirrorMode = input.mirrorMode === 0 ? current.mirrorMode : input.mirrorMode;
  if (!Object.values(Mirror).includes(mirrorMode as never))
    throw invalidArgument(field('mirror_mode'), 'must be SERVICE or SHARED');
  const kubernetesContext = input.kubernetesContext ?? current.kubernetesContext;
  if (kubernetesContext.length > 253 || /[\p{Cc}\s]/u.test(kubernetesContext) || kubernetesContext.startsWith('-')) {
    throw invalidArgument(
      field('kubernetes_context'),
      'must be a kubeconfig context name (no blanks, not starting with "-")',
    );
  }
  if (kubernetesContext !== current.kubernetesContext) {
    const unregistered = checkKubeContext(kubeContexts, kubernetesContext);
    if (unregistered) throw failedPrecondition(unregistered, field('kubernetes_context'));
  }
  const deployHost = input.deployHost ?? current.deployHost ?? '';
  if (deployHost !== (current.deployHost ?? '')) {
    if ((current.deployHost ?? '') !== '') {
      throw failedPrecondition(
        `the environment is bound to deploy host ${JSON.stringify(current.deployHost)}: its pods, ports and volumes are there (a replacement worker takes the host's name)`,
        field('deploy_host'),
      );
    }
    if (deployHost !== '' && !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(deployHost)) {
      throw invalidArgument(
        field('deploy_host'),
        'must be a DNS label (lowercase letters, digits and "-", at most 63)',
      );
    }
    if (deployHost !== '' && !deployHosts.includes(deployHost)) {
      throw failedPrecondition(
        deployHosts.length === 0
          ? `no deploy hosts are configured (STAGELINE_DEPLOY_HOSTS): "${deployHost}" has no workers`
          : `"${deployHost}" is not one of the deploy hosts (STAGELINE_DEPLOY_HOSTS: ${deployHosts.join(', ')})`,
        field('deploy_host'),
      );
    }
  }
  const namespace = input.namespace ?? current.namespace;
  if (namespace !== '') {
    const error = checkNamespace(namespace);
    if (error) throw invalidArgument(field('namespace'), error);
  }
  return {
    maxParallelBuilds: parallelism(field('max_parallel_builds'), input.maxParallelBuilds, current.maxParallelBuilds),
    maxParallelDeploys: parallelism(
      field('max_parallel_deploys'),
      input.maxParallelDeploys,
      current.maxParallelDeploys,
    ),
    schedulingMode,
    mirrorMode,
    kubernetesContext,
    namespace,
    exposure: applyExposure(input.exposure, current.exposure ?? CLUSTER_IP),
    autoDeploy: applyAutoDeploySettings(input.autoDeploy, current.autoDeploy),
    ...(deployHost !== '' ? { deployHost } : {}),
  };
}

/**
 * An environment named `project/name` with `settings` may exist: its namespace (the default one when
 * none is set) is not reserved. `field`: the request field that names the environment.
 */
export function checkEnvironmentNamespace(project: string, name: string, settings: Settings, field = 'name'): void {
  if (settings.namespace !== '') return;
  const namespace = defaultNamespace(project, name);
  const error = checkNamespace(namespace);
  if (error)
    throw invalidArgument(field, `its default namespace ${namespace} cannot be used: ${error}; set settings.namespace`);
}
