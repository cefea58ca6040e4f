import type { RegistrySource } from '../../app/auto-deploy-app.ts';

// The tags of an image in its registry: the registry HTTP API `GET /v2/<name>/tags/list`, anonymously
// (a registry answering 401 with a Bearer challenge gets an anonymous token first, as Docker Hub wants).
// Loopback registries are spoken to over plain HTTP (like podman's and the dev stack's), others HTTPS.

const TIMEOUT_MS = 10_000;
const MAX_TAGS = 10_000;

export function splitImage(image: string): { registry: string; name: string } {
  const slash = image.indexOf('/');
  const first = slash < 0 ? '' : image.slice(0, slash);
  if (first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost'))
    return { registry: first, name: image.slice(slash + 1) };
  return { registry: 'registry-1.docker.io', name: image.includes('/') ? image : `library/${image}` };
}

const isLoopback = (host: string) => /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/.test(host);

async function get(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { headers, redirect: 'follow', signal: AbortSignal.timeout(TIMEOUT_MS) });
}

export class RegistryHttp implements RegistrySource {
  async tags(image: string): Promise<string[]> {
    const { registry, name } = splitImage(image);
    const base = `${isLoopback(registry) ? 'http' : 'https'}://${registry}`;
    const url = `${base}/v2/${name}/tags/list?n=${MAX_TAGS}`;
    let res = await get(url);
    const challenge = res.headers.get('www-authenticate') ?? '';
    if (res.status === 401 && /^Bearer /i.test(challenge)) {
      const params = Object.fromEntries(
        [...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!.toLowerCase(), m[2]!]),
      );
      const realm = new URL(params.realm ?? '');
      if (params.service) realm.searchParams.set('service', params.service);
      realm.searchParams.set('scope', `repository:${name}:pull`);
      const token = (await (await get(realm.toString())).json()) as { token?: string; access_token?: string };
      res = await get(url, { authorization: `Bearer ${token.token ?? token.access_token ?? ''}` });
    }
    if (!res.ok) throw new Error(`${registry}: tags of ${name}: HTTP ${res.status}`);
    const body = (await res.json()) as { tags?: unknown };
    return Array.isArray(body.tags) ? body.tags.filter((t): t is string => typeof t === 'string') : [];
  }
}
