// What a request may ask, pure: the version forms, and the custom-chart refusal on `local`.

/** Whether `version` is one of the forms a request may pin: '' (none), commit:, tag:, revision: or bare. */
export function validVersion(version: string): boolean {
  if (version === '') return true;
  const m = /^(?:(commit|tag|revision):)?(.+)$/.exec(version);
  const kind = m?.[1];
  const value = m?.[2] ?? '';
  return kind === 'commit'
    ? /^[0-9a-f]{7,64}$/.test(value)
    : kind === 'revision'
      ? /^[1-9][0-9]{0,9}$/.test(value)
      : /^[\w][\w.-]{0,127}$/.test(value);
}

/** A service as the custom-chart rule sees it. */
export interface ChartedService {
  id: string;
  name: string;
  skipped: boolean;
  /** It names its own Helm chart. */
  customChart: boolean;
}

/**
 * A service naming its own Helm chart that a request would deploy on a runtime other than kubernetes
 * (`local` has no helm to render charts): its name, so the request is refused before anything starts.
 * The request's targets: `serviceIds`, or (empty) every service not skipped. Only actions that deploy.
 */
export function customChartOnLocal(
  runtime: string,
  services: readonly ChartedService[],
  action: string,
  serviceIds: readonly string[],
): string | undefined {
  if (runtime === 'kubernetes') return undefined;
  if (action !== 'DEPLOY' && action !== 'REDEPLOY' && action !== 'ROLLBACK') return undefined;
  const targets =
    serviceIds.length > 0 ? services.filter((s) => serviceIds.includes(s.id)) : services.filter((s) => !s.skipped);
  return targets.find((s) => s.customChart)?.name;
}
