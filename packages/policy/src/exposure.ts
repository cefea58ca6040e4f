// How a `kubernetes` environment's public ports are reached from outside the cluster: one rule, checked
// by control at input and by deploy before it renders a chart.

export const EXPOSURE_TYPES = ['CLUSTER_IP', 'NODE_PORT', 'LOAD_BALANCER', 'INGRESS'] as const;
export type ExposureType = (typeof EXPOSURE_TYPES)[number];

export interface Exposure {
  type: ExposureType;
  /** INGRESS: the DNS name the services' hosts are made under (`<service>[-<port>].<domain>`). */
  ingressDomain: string;
  /** INGRESS: the IngressClass; '' is the cluster's default. */
  ingressClass: string;
  /** INGRESS: a kubernetes.io/tls Secret in the namespace; '' is plain HTTP. */
  tlsSecret: string;
}

export const CLUSTER_IP: Exposure = { type: 'CLUSTER_IP', ingressDomain: '', ingressClass: '', tlsSecret: '' };

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
// Room left in a 253-character host for `<service>-<port>.` (a 63-character label, "-", 5 digits, ".").
export const INGRESS_DOMAIN_MAX = 253 - 70;

function dnsSubdomain(value: string, max = 253): boolean {
  return value.length <= max && value.split('.').every((label) => DNS_LABEL.test(label));
}

/** The first field of `e` that is wrong (snake_case, as in the API) and why; undefined when it is fine. */
export function checkExposure(e: Exposure): { field: string; message: string } | undefined {
  if (!(EXPOSURE_TYPES as readonly string[]).includes(e.type)) {
    return { field: 'type', message: `must be one of ${EXPOSURE_TYPES.join(', ')}` };
  }
  if (e.type !== 'INGRESS') {
    for (const [field, value] of [
      ['ingress_domain', e.ingressDomain],
      ['ingress_class', e.ingressClass],
      ['tls_secret', e.tlsSecret],
    ] as const) {
      if (value !== '') return { field, message: `only an INGRESS exposure takes it (type is ${e.type})` };
    }
    return undefined;
  }
  if (e.ingressDomain === '') return { field: 'ingress_domain', message: 'an INGRESS exposure needs its domain' };
  if (!dnsSubdomain(e.ingressDomain, INGRESS_DOMAIN_MAX)) {
    return {
      field: 'ingress_domain',
      message: `must be a DNS name of lowercase labels (letters, digits, "-"), at most ${INGRESS_DOMAIN_MAX} characters`,
    };
  }
  if (e.ingressClass !== '' && !dnsSubdomain(e.ingressClass)) {
    return { field: 'ingress_class', message: 'must be an IngressClass name (a DNS subdomain)' };
  }
  if (e.tlsSecret !== '' && !dnsSubdomain(e.tlsSecret)) {
    return { field: 'tls_secret', message: 'must be a Secret name (a DNS subdomain)' };
  }
  return undefined;
}
