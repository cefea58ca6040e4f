// Git credentials of the build service (GIT_CREDENTIALS_FILE): a service definition never carries
// them (control refuses a password in a git URL), the build workers hold them. JSON:
//
//   { "git": [
//       { "url": "https://git.example.com/team/", "username": "ci", "password": "…" },
//       { "url": "https://git.example.com/", "username": "ci", "passwordFile": "/run/secrets/git-token" },
//       { "url": "ssh://git.example.com/", "sshKeyFile": "/run/secrets/deploy-key", "knownHostsFile": "/etc/stageline/known_hosts" } ] }
//
// The entry whose `url` is the longest prefix of the repository's normalized URL wins.
import { readFile } from 'node:fs/promises';
import { normalizeGitUrl } from '../../domain/cache-key.ts';

export interface GitCredentials {
  username?: string;
  password?: string;
  /** A private key for ssh:// and user@host:path URLs. */
  sshKeyFile?: string;
  knownHostsFile?: string;
}

export type GitCredentialsLookup = (url: string) => GitCredentials | undefined;

interface Entry extends GitCredentials {
  prefix: string;
}

function str(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw new Error(`${where} must be a non-empty string`);
  return value;
}

/** Reads and checks the file; the error names the entry at fault, never a value. */
export async function loadGitCredentials(path: string | undefined): Promise<GitCredentialsLookup> {
  if (path === undefined) return () => undefined;
  const text = await readFile(path, 'utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error('not valid JSON');
  }
  const list = (parsed as { git?: unknown } | null)?.git;
  if (!Array.isArray(list)) throw new Error('expected {"git": [ … ]}');
  const entries: Entry[] = [];
  for (const [i, raw] of list.entries()) {
    const where = `git[${i}]`;
    const e = raw as Record<string, unknown>;
    const url = str(e.url, `${where}.url`);
    if (url === undefined) throw new Error(`${where}.url is required`);
    const passwordFile = str(e.passwordFile, `${where}.passwordFile`);
    let password = str(e.password, `${where}.password`);
    if (passwordFile !== undefined) password = (await readFile(passwordFile, 'utf8')).trim();
    const entry: Entry = { prefix: normalizeGitUrl(url) };
    const username = str(e.username, `${where}.username`);
    if (username !== undefined) entry.username = username;
    if (password !== undefined) entry.password = password;
    const sshKeyFile = str(e.sshKeyFile, `${where}.sshKeyFile`);
    if (sshKeyFile !== undefined) entry.sshKeyFile = sshKeyFile;
    const knownHostsFile = str(e.knownHostsFile, `${where}.knownHostsFile`);
    if (knownHostsFile !== undefined) entry.knownHostsFile = knownHostsFile;
    entries.push(entry);
  }
  return credentialsLookup(entries);
}

export function credentialsLookup(entries: ReadonlyArray<GitCredentials & { prefix: string }>): GitCredentialsLookup {
  const sorted = entries
    .map((e) => ({ ...e, prefix: normalizeGitUrl(e.prefix) }))
    .sort((a, b) => b.prefix.length - a.prefix.length);
  return (url) => {
    const normalized = normalizeGitUrl(url);
    const found = sorted.find(
      (e) => normalized === e.prefix || normalized.startsWith(e.prefix.endsWith('/') ? e.prefix : `${e.prefix}/`),
    );
    if (found === undefined) return undefined;
    const { prefix: _prefix, ...credentials } = found;
    return credentials;
  };
}
