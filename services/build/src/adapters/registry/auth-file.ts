// Credentials from a containers-auth.json / docker config.json (`{"auths": {"host": {"auth": "base64(user:pass)"}}}`),
// the format podman, buildah and skopeo already use. Read once at start; errors never quote the file.
import { readFile } from 'node:fs/promises';
import type { Credentials, CredentialsLookup } from './auth.ts';

interface AuthFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string }>;
}

/** Host key of an `auths` entry: entries may be written as URLs (`https://index.docker.io/v1/`). */
function hostOf(key: string): string {
  const withoutScheme = key.replace(/^[a-z]+:\/\//, '');
  const host = withoutScheme.split('/')[0] ?? '';
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
}

export function credentialsFromAuthJson(text: string): CredentialsLookup {
  let parsed: AuthFile;
  try {
    parsed = JSON.parse(text) as AuthFile;
  } catch {
    throw new Error('registry auth file is not valid JSON');
  }
  const byHost = new Map<string, Credentials>();
  for (const [key, entry] of Object.entries(parsed.auths ?? {})) {
    let username = entry.username;
    let password = entry.password;
    if (entry.auth !== undefined && entry.auth !== '') {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw new Error(`registry auth file: the entry for ${hostOf(key)} is not base64("user:password")`);
      username = decoded.slice(0, colon);
      password = decoded.slice(colon + 1);
    }
    if (username !== undefined && password !== undefined) byHost.set(hostOf(key), { username, password });
  }
  return (registry) => byHost.get(registry);
}

export async function loadCredentials(path: string | undefined): Promise<CredentialsLookup> {
  if (path === undefined) return () => undefined;
  return credentialsFromAuthJson(await readFile(path, 'utf8'));
}
