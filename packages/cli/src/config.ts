// Where the CLI finds Stageline and how it proves who it is. Each setting: its flag, then its
// environment variable, then the config file (~/.config/stageline/config.yaml), then a default (the
// address only: the CA and the token have none). The config file may also name a default project and
// environment.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { ClientSecurity } from '@stageline/grpc';
import { isMap, LineCounter, type Node, parseDocument } from 'yaml';
import { UsageError } from './errors.ts';

export const DEFAULT_ADDRESS = '127.0.0.1:50051';

export interface ConfigFile {
  /** control's gRPC address, host:port. */
  address?: string;
  /** The CA certificate (PEM file) control's certificate is verified against. */
  ca?: string;
  /** An API token (`stl_…`). The file is then written readable by its owner only. */
  token?: string;
  /** A file holding an API token (read and trimmed at each command). */
  tokenFile?: string;
  /** Used when an environment is named without its project. */
  project?: string;
  /** Used when a command names no environment. */
  environment?: string;
}
export const CONFIG_KEYS: (keyof ConfigFile)[] = ['address', 'ca', 'token', 'tokenFile', 'project', 'environment'];
/** Settings the CLI no longer uses: ignored when read, and `config unset` still removes them. */
export const RETIRED_KEYS: Readonly<Record<string, string>> = {
  buildAddress: 'explain-build asks control now',
};
/** Settings that name files: relative paths in the config file are relative to the file itself. */
const PATH_KEYS: (keyof ConfigFile)[] = ['ca', 'tokenFile'];

export function configPath(env: NodeJS.ProcessEnv): string {
  if (env.STAGELINE_CONFIG) return env.STAGELINE_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'stageline', 'config.yaml');
}

export function readConfig(path: string): ConfigFile {
  if (!existsSync(path)) return {};
  const lineCounter = new LineCounter();
  const doc = parseDocument(readFileSync(path, 'utf8'), { lineCounter });
  const first = doc.errors[0];
  if (first) {
    const pos = lineCounter.linePos(first.pos[0]);
    throw new UsageError(`${path}:${pos.line}:${pos.col}: ${first.message.split('\n')[0]}`);
  }
  if (doc.contents === null) return {};
  if (!isMap(doc.contents)) throw new UsageError(`${path}:1:1: must be a map of ${CONFIG_KEYS.join(', ')}`);
  const out: ConfigFile = {};
  for (const pair of doc.contents.items) {
    const key = String((pair.key as { value?: unknown }).value);
    const value = (pair.value as { value?: unknown } | null)?.value;
    const at = lineCounter.linePos((pair.key as Node | null)?.range?.[0] ?? 0);
    if (key in RETIRED_KEYS) continue;
    if (!(CONFIG_KEYS as string[]).includes(key)) {
      throw new UsageError(`${path}:${at.line}:${at.col}: ${key}: is not a known setting (${CONFIG_KEYS.join(', ')})`);
    }
    if (typeof value !== 'string') throw new UsageError(`${path}:${at.line}:${at.col}: ${key}: must be a string`);
    out[key as keyof ConfigFile] = value;
  }
  return out;
}

export function writeConfigValue(path: string, key: string, value: string | undefined): void {
  const doc = existsSync(path) ? parseDocument(readFileSync(path, 'utf8')) : parseDocument('{}');
  if (value === undefined) doc.delete(key);
  else doc.set(key, value);
  mkdirSync(dirname(path), { recursive: true });
  // A file holding a token is readable by its owner only (like the dev set-up's admin.token).
  const secret = doc.has('token');
  writeFileSync(path, doc.toString({ flowCollectionPadding: false }).replace(/^\{\}\n$/, ''), {
    mode: secret ? 0o600 : 0o644,
  });
  if (secret) chmodSync(path, 0o600);
}

/** What `config set` stores: paths absolute (a relative one would depend on where the next command runs). */
export function configValue(key: keyof ConfigFile, value: string): string {
  return PATH_KEYS.includes(key) ? resolve(value) : value;
}

export interface Endpoint {
  value: string;
  /** Where it came from, for error messages: "--address", "STAGELINE_ADDRESS", the config path, "default". */
  from: string;
}

/** The token, or the file that holds it; `from` names the flag, variable or config file. Never printed. */
export type TokenSetting = { from: string; value: string } | { from: string; file: string };

export interface ResolvedConfig {
  address: Endpoint;
  /** The CA certificate file; undefined: none was named (commands that call control then stop). */
  ca: Endpoint | undefined;
  token: TokenSetting | undefined;
  project: string | undefined;
  environment: string | undefined;
  configPath: string;
}

export interface ConfigFlags {
  address?: string | undefined;
  ca?: string | undefined;
  token?: string | undefined;
  tokenFile?: string | undefined;
  project?: string | undefined;
}

export function resolveConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv): ResolvedConfig {
  const path = configPath(env);
  const file = readConfig(path);
  const fromFile = (key: keyof ConfigFile) => {
    const value = file[key];
    if (!value) return undefined;
    return PATH_KEYS.includes(key) && !isAbsolute(value) ? resolve(dirname(path), value) : value;
  };
  /** The first of flag, variable, config file that is set (an empty value is not). */
  const pick = (flag: string | undefined, flagName: string, envName: string, key: keyof ConfigFile) =>
    flag
      ? { value: flag, from: flagName }
      : env[envName]
        ? { value: env[envName]!, from: envName }
        : fromFile(key)
          ? { value: fromFile(key)!, from: path }
          : undefined;
  // Last resort, below the config file: the files a local install's set-up wrote, which the dev
  // wrapper (deploy/dev/stageline) names in STAGELINE_DEFAULT_CA and STAGELINE_DEFAULT_TOKEN_FILE.
  const fallback = (name: string) => (env[name] ? { value: env[name]!, from: name } : undefined);
  const tokenFile =
    pick(flags.tokenFile, '--token-file', 'STAGELINE_TOKEN_FILE', 'tokenFile') ??
    fallback('STAGELINE_DEFAULT_TOKEN_FILE');
  return {
    address: pick(flags.address, '--address', 'STAGELINE_ADDRESS', 'address') ?? {
      value: DEFAULT_ADDRESS,
      from: 'default',
    },
    ca: pick(flags.ca, '--ca', 'STAGELINE_CA', 'ca') ?? fallback('STAGELINE_DEFAULT_CA'),
    // A token named directly wins over a file that holds one, wherever each was named.
    token:
      pick(flags.token, '--token', 'STAGELINE_TOKEN', 'token') ??
      (tokenFile === undefined ? undefined : { file: tokenFile.value, from: tokenFile.from }),
    project: flags.project || env.STAGELINE_PROJECT || file.project || undefined,
    environment: env.STAGELINE_ENVIRONMENT || file.environment || undefined,
    configPath: path,
  };
}

export const NO_TOKEN =
  'no token: pass --token, set STAGELINE_TOKEN, or `stageline config set token …` ' +
  '(or name a file holding one: --token-file, STAGELINE_TOKEN_FILE, `stageline config set tokenFile …`); ' +
  'an admin makes tokens with `stageline token create`';
export const NO_CA =
  'no CA certificate to verify control with: pass --ca <file>, set STAGELINE_CA, or `stageline config set ca <file>` ' +
  '(the dev stack writes $STAGELINE_STATE/tls/ca.pem; deploy/dev/stageline uses it by default)';

/** The token itself: the value, or the file's content trimmed. */
export function tokenOf(setting: TokenSetting): string {
  if ('value' in setting) return setting.value.trim();
  let text: string;
  try {
    text = readFileSync(setting.file, 'utf8');
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
    throw new UsageError(`cannot read the token file ${setting.file} (from ${setting.from}): ${reason}`);
  }
  const token = text.trim();
  if (token === '') throw new UsageError(`the token file ${setting.file} (from ${setting.from}) is empty`);
  return token;
}

/** What `config view` may say of the token: whether one is set and where from — never its value. */
export interface TokenStatus {
  set: boolean;
  /** The flag, variable or config file that named it (or its file); undefined: none did. */
  from?: string;
  /** The file it is read from, when a file holds it. */
  file?: string;
  /** Why the file named cannot give a token. */
  problem?: string;
}

export function tokenStatus(setting: TokenSetting | undefined): TokenStatus {
  if (setting === undefined) return { set: false };
  if ('value' in setting) return { set: true, from: setting.from };
  try {
    tokenOf(setting);
    return { set: true, from: setting.from, file: setting.file };
  } catch (e) {
    const problem = e instanceof Error ? e.message : String(e);
    return { set: false, from: setting.from, file: setting.file, problem };
  }
}

/** TLS to control with the CA, and the token on every call; a usage error naming what is missing. */
export function securityOf(config: ResolvedConfig): ClientSecurity {
  const missing = [config.token === undefined ? NO_TOKEN : undefined, config.ca === undefined ? NO_CA : undefined];
  const problems = missing.filter((m) => m !== undefined);
  if (problems.length > 0) throw new UsageError(problems.join('\nstageline: '));
  const token = tokenOf(config.token!);
  const ca = config.ca!;
  if (!existsSync(ca.value)) throw new UsageError(`the CA certificate ${ca.value} (from ${ca.from}) does not exist`);
  return { ca: ca.value, token };
}
